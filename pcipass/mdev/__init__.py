"""Mediated devices (mdev): the types a parent device offers, the instances that exist, creating and removing
them.

The kernel's interface (Documentation/driver-api/vfio-mediated-device.rst, Documentation/ABI/testing/
sysfs-bus-vfio-mdev): every parent registered with the mdev core appears in ``/sys/class/mdev_bus/<parent>``
(a PCI device or a virtual one, such as the sample ``mtty``), with one directory per type under
``mdev_supported_types/`` (``available_instances`` and ``device_api`` mandatory, ``name`` and ``description``
optional, ``devices/`` linking the instances); writing a UUID to a type's ``create`` makes the instance
``/sys/bus/mdev/devices/<uuid>``, and writing ``1`` to its ``remove`` destroys it.

Modules: ``model`` (the frozen records), ``read`` (the sysfs readers), ``mdevctl`` (mdevctl's definitions),
``ops`` (create/remove: plan, guards, lock, state).
"""
