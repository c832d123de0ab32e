# SPDX-License-Identifier: LGPL-2.1-or-later
# The configuration of a private dbus-daemon that stands in for a host's system bus (tests, VM guests, demo).

# private_bus_config LISTEN-ADDRESS: the bus configuration on stdout. Anyone may connect, own and send: the
# daemons' own access checks (bus_verify_admin) are what the tests exercise, not the bus policy.
private_bus_config() {
        cat <<EOB
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>$1</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
    <allow user="*"/>
  </policy>
</busconfig>
EOB
}
