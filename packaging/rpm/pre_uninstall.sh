# $1 = 0: the package is being removed (not upgraded): stop and disable the service.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
    systemctl --no-reload disable --now approval-watch.service >/dev/null 2>&1 || :
fi
