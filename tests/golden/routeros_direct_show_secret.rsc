# RouterOS v7 script from rrnet-radius for NAS "cafe-1" (tier: direct).
# Run it in a terminal (paste it) or save it as rrnet.rsc and run /import file-name=rrnet.rsc.
# Running it again replaces what it added before (entries with comment="rrnet-radius").
# Needs RouterOS 7.15 or later (require-message-auth, BlastRADIUS / CVE-2024-3596).

# 1. The RADIUS servers; the router asks the second when the first does not answer.
#    Replies must carry Message-Authenticator; the server always sends it.
/radius remove [find where comment="rrnet-radius"]
/radius add service=hotspot address=203.0.113.10 secret="golden\"\$ecret\\\?-1234" authentication-port=1812 accounting-port=1813 timeout=1s require-message-auth=yes-for-request-resp comment="rrnet-radius"
/radius add service=hotspot address=203.0.113.11 secret="golden\"\$ecret\\\?-1234" authentication-port=1812 accounting-port=1813 timeout=1s require-message-auth=yes-for-request-resp comment="rrnet-radius"

# 2. The hotspot asks RADIUS, sends accounting, and takes the interim interval from
#    the server's Acct-Interim-Interval.
:if ([:len [/ip hotspot profile find where name="cafe \$profile"]] = 0) do={ :error "hotspot profile cafe \$profile not found: pass --hotspot-profile" }
/ip hotspot profile set [find where name="cafe \$profile"] use-radius=yes radius-accounting=yes radius-interim-update=received

# 3. CoA and Disconnect-Request from the server only: the listener on UDP 3799 and
#    firewall rules at the top of the input chain that let only the server reach it.
/radius incoming set accept=yes port=3799
/ip firewall filter remove [find where comment="rrnet-radius"]
:if ([:len [/ip firewall filter find where chain=input]] = 0) do={ /ip firewall filter add chain=input protocol=udp dst-port=3799 action=drop comment="rrnet-radius" } else={ /ip firewall filter add chain=input protocol=udp dst-port=3799 action=drop comment="rrnet-radius" place-before=[:pick [/ip firewall filter find where chain=input] 0] }
:if ([:len [/ip firewall filter find where chain=input]] = 0) do={ /ip firewall filter add chain=input protocol=udp dst-port=3799 src-address=203.0.113.11 action=accept comment="rrnet-radius" } else={ /ip firewall filter add chain=input protocol=udp dst-port=3799 src-address=203.0.113.11 action=accept comment="rrnet-radius" place-before=[:pick [/ip firewall filter find where chain=input] 0] }
:if ([:len [/ip firewall filter find where chain=input]] = 0) do={ /ip firewall filter add chain=input protocol=udp dst-port=3799 src-address=203.0.113.10 action=accept comment="rrnet-radius" } else={ /ip firewall filter add chain=input protocol=udp dst-port=3799 src-address=203.0.113.10 action=accept comment="rrnet-radius" place-before=[:pick [/ip firewall filter find where chain=input] 0] }
