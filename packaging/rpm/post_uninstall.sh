if command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    # $1 >= 1: an upgrade: restart the service only if it was running.
    if [ "$1" -ge 1 ]; then
        systemctl try-restart approval-watch.service >/dev/null 2>&1 || :
    fi
fi
