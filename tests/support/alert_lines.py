"""Real daemons' lines the alert, shape and mute tests send as alerts: one message from two
addresses, days and pids (one shape), a security failure twice, and a kernel USB error."""

CLOSED = "Dec 10 07:08:28 gw sshd[24208]: Connection closed by 198.51.100.4 port 5150 [preauth]"
CLOSED_AGAIN = ("Jan  2 17:58:03 gw sshd[311]: Connection closed by 2001:db8::12 port 40022 "
                "[preauth]")
FAILED = "Dec 10 07:09:01 gw sshd[24211]: Failed password for root from 192.0.2.1 port 22 ssh2"
FAILED_AGAIN = "Dec 11 01:00:00 gw sshd[7]: Failed password for root from 192.0.2.77 port 4 ssh2"
USB = "usb 1-1.2: device descriptor read/64, error -71"
