# RouterOS v7 script from rrnet-radius for NAS "cafe-2" (tier: vpn).
# Run it in a terminal (paste it) or save it as rrnet.rsc and run /import file-name=rrnet.rsc.
# Running it again replaces what it added before (entries with comment="rrnet-radius").
# Needs RouterOS 7.15 or later (require-message-auth, BlastRADIUS / CVE-2024-3596).
#
# >>> The shared secret is not printed. Replace PASTE-THE-SHARED-SECRET-HERE below with the
# >>> secret given to `rrnet-radius nas add --name cafe-2` before you run this script.

# 1. WireGuard tunnel to the server. The router keeps its private key; only its
#    public key (printed at the end) goes to the server.
:if ([:len [/interface wireguard find where name="wg-rrnet"]] = 0) do={ /interface wireguard add name="wg-rrnet" comment="rrnet-radius" }
/interface wireguard peers remove [find where comment="rrnet-radius"]
/interface wireguard peers add interface="wg-rrnet" public-key="yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=" endpoint-address="vpn.example.net" endpoint-port=51820 allowed-address=10.8.0.1/32 persistent-keepalive=25s comment="rrnet-radius"
/ip address remove [find where comment="rrnet-radius"]
/ip address add address=10.8.0.2/24 interface="wg-rrnet" comment="rrnet-radius"
/ip route remove [find where comment="rrnet-radius"]

# 2. The RADIUS server.
#    Replies must carry Message-Authenticator; the server always sends it.
/radius remove [find where comment="rrnet-radius"]
/radius add service=hotspot address=10.8.0.1 secret="PASTE-THE-SHARED-SECRET-HERE" authentication-port=1812 accounting-port=1813 timeout=1s require-message-auth=yes-for-request-resp src-address=10.8.0.2 comment="rrnet-radius"

# 3. The hotspot asks RADIUS, sends accounting, and takes the interim interval from
#    the server's Acct-Interim-Interval.
:if ([:len [/ip hotspot profile find where name="hsprof1"]] = 0) do={ :error "hotspot profile hsprof1 not found: pass --hotspot-profile" }
/ip hotspot profile set [find where name="hsprof1"] use-radius=yes radius-accounting=yes radius-interim-update=received

# 4. CoA and Disconnect-Request from the server only: the listener on UDP 1700 and
#    firewall rules at the top of the input chain that let only the server reach it.
/radius incoming set accept=yes port=1700
/ip firewall filter remove [find where comment="rrnet-radius"]
:if ([:len [/ip firewall filter find where chain=input]] = 0) do={ /ip firewall filter add chain=input protocol=udp dst-port=1700 action=drop comment="rrnet-radius" } else={ /ip firewall filter add chain=input protocol=udp dst-port=1700 action=drop comment="rrnet-radius" place-before=[:pick [/ip firewall filter find where chain=input] 0] }
:if ([:len [/ip firewall filter find where chain=input]] = 0) do={ /ip firewall filter add chain=input protocol=udp dst-port=1700 src-address=10.8.0.1 in-interface="wg-rrnet" action=accept comment="rrnet-radius" } else={ /ip firewall filter add chain=input protocol=udp dst-port=1700 src-address=10.8.0.1 in-interface="wg-rrnet" action=accept comment="rrnet-radius" place-before=[:pick [/ip firewall filter find where chain=input] 0] }

# 5. Give this key to the server: in its WireGuard config add a [Peer] with
#    PublicKey = <the key printed below> and AllowedIPs = 10.8.0.2/32.
:put ("WireGuard public key of this router: " . [/interface wireguard get [find where name="wg-rrnet"] public-key])
