# RouterOS v7 script from rrnet-radius for NAS "cafe-3" (tier: radsec).
# Run it in a terminal (paste it) or save it as rrnet.rsc and run /import file-name=rrnet.rsc.
# Running it again replaces what it added before (entries with comment="rrnet-radius").
# Needs RouterOS 7.15 or later (require-message-auth, BlastRADIUS / CVE-2024-3596).

# 1. Certificates. Upload cafe-3.p12 (from `rrnet-radius pki issue --nas cafe-3`) to the
#    router's Files first. It holds the router's certificate and key and the CA that
#    signed the server's certificate; the CA is marked trusted so the router can verify
#    the server. The router's certificate is renamed for /radius certificate= below.
/certificate remove [find where name="rrnet-radius-cafe-3"]
/certificate import file-name="cafe-3.p12" passphrase="PASTE-THE-P12-PASSPHRASE-HERE"
:if ([:len [/certificate find where common-name="cafe-3" and private-key]] = 0) do={ :error "no certificate with CN cafe-3 and its key was imported: check the file and the passphrase" }
/certificate set [find where common-name="cafe-3" and private-key] name="rrnet-radius-cafe-3"
/certificate set [find where common-name~"^rrnet-radius RadSec CA" and !private-key] trusted=yes

# 2. The RADIUS server.
#    Replies must carry Message-Authenticator; the server always sends it.
/radius remove [find where comment="rrnet-radius"]
/radius add service=hotspot address=203.0.113.10 protocol=radsec certificate="rrnet-radius-cafe-3" secret="radsec" authentication-port=2083 accounting-port=2083 timeout=1s require-message-auth=yes-for-request-resp comment="rrnet-radius"

# 3. The hotspot asks RADIUS, sends accounting, and takes the interim interval from
#    the server's Acct-Interim-Interval.
:if ([:len [/ip hotspot profile find where name="hsprof1"]] = 0) do={ :error "hotspot profile hsprof1 not found: pass --hotspot-profile" }
/ip hotspot profile set [find where name="hsprof1"] use-radius=yes radius-accounting=yes radius-interim-update=received

# 4. CoA and Disconnect-Request from the server only: the listener on UDP 3799 and
#    firewall rules at the top of the input chain that let only the server reach it.
/radius incoming set accept=yes port=3799
/ip firewall filter remove [find where comment="rrnet-radius"]
:if ([:len [/ip firewall filter find where chain=input]] = 0) do={ /ip firewall filter add chain=input protocol=udp dst-port=3799 action=drop comment="rrnet-radius" } else={ /ip firewall filter add chain=input protocol=udp dst-port=3799 action=drop comment="rrnet-radius" place-before=[:pick [/ip firewall filter find where chain=input] 0] }
:if ([:len [/ip firewall filter find where chain=input]] = 0) do={ /ip firewall filter add chain=input protocol=udp dst-port=3799 src-address=203.0.113.10 action=accept comment="rrnet-radius" } else={ /ip firewall filter add chain=input protocol=udp dst-port=3799 src-address=203.0.113.10 action=accept comment="rrnet-radius" place-before=[:pick [/ip firewall filter find where chain=input] 0] }
