"""Passthrough that survives reboot: ``persist``/``unpersist`` edit the desired-state file (pcipass/config),
``apply`` converges the host to it through the binding engine, ``verify`` compares it with the hardware, and
``boot`` installs the systemd unit that runs ``apply`` early at every boot."""
