# Make systemd see the new or changed unit; never enable or start it (the config and the
# webhook credential come first). Containers and chroots may have no systemd.
if command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
