#!/usr/bin/env bash
# Makes a loopback Mosquitto for RollerTrace that is not an open broker: one
# MQTT user and random password per device, users for the bridges, and the
# shipped ACL (acl.conf: a device writes only its own topics), written into DIR
# together with a mosquitto.conf made from deploy/mosquitto/mosquitto.conf.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: deploy/mosquitto/local-auth.sh --dir DIR [--port N] [--bridge USER]... [--insecure-anonymous] DEVICE...

Writes into DIR (created, mode 700):
  mosquitto.conf       the shipped deploy/mosquitto/mosquitto.conf on 127.0.0.1:PORT,
                       with the password file and ACL below
  mosquitto.passwd     hashed passwords (mosquitto_passwd) for every DEVICE and bridge
  mosquitto.acl        deploy/mosquitto/acl.conf with the three blocks per bridge user
  mqtt-credentials     "<device> <password>" lines for roller-fleet --mqtt-credentials-file
  mqtt-password-DEVICE one device's password, for roller-agent --mqtt-password-file
  bridge-password      the bridges' password, for mqtt-bridge --mqtt-password-file

  --port N              listener port on 127.0.0.1 (default 1883)
  --bridge USER         a bridge's MQTT user (default mqtt-bridge); the bridge logs in
                        as USER for events, USER-control for decisions and commands, USER-acks for acks; repeatable
  --insecure-anonymous  INSECURE: let any local process connect without a password and
                        publish as any device (no password file, no ACL); for debugging
  DEVICE                roller and steriliser ids (their MQTT user names)

Passwords are only sent in clear on loopback; for a clinic network use
mosquitto-production.conf (TLS) instead.
USAGE
}

dir="" port=1883 anonymous=0
bridges=() devices=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --bridge) bridges+=("$2"); shift 2 ;;
    --insecure-anonymous) anonymous=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "local-auth: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *) devices+=("$1"); shift ;;
  esac
done
[ -n "$dir" ] || { echo "local-auth: --dir is required" >&2; usage >&2; exit 2; }
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] ||
  { echo "local-auth: --port '$port' is not a port number" >&2; exit 2; }
[ "${#bridges[@]}" -gt 0 ] || bridges=(mqtt-bridge)
for user in "${bridges[@]}" "${devices[@]}"; do
  # Mosquitto user names end at ':' in the password file; the ACL's %u must
  # stay one topic level.
  [[ "$user" =~ ^[A-Za-z0-9._-]{1,64}$ ]] ||
    { echo "local-auth: '$user' is not a usable MQTT user name (letters, digits, . _ -)" >&2; exit 2; }
done
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
chmod 700 "$dir"
dir=$(cd "$dir" && pwd)

secret() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

conf="$dir/mosquitto.conf"
sed -e "s/^listener 1883 /listener $port /" \
  -e "s|^password_file .*|password_file $dir/mosquitto.passwd|" \
  -e "s|^acl_file .*|acl_file $dir/mosquitto.acl|" "$here/mosquitto.conf" >"$conf"
if [ "$anonymous" = 1 ]; then
  sed -i -e 's/^allow_anonymous false/allow_anonymous true/' -e '/^password_file /d' -e '/^acl_file /d' \
    -e '/^use_username_as_clientid /d' "$conf"
  echo "local-auth: INSECURE: $conf lets any local process publish as any device" >&2
  exit 0
fi

umask 077
bridge_password=$(secret)
printf '%s\n' "$bridge_password" >"$dir/bridge-password"
: >"$dir/mqtt-credentials"
plain="$dir/mosquitto.passwd"
: >"$plain"
for user in "${bridges[@]}"; do
  printf '%s:%s\n%s-control:%s\n%s-acks:%s\n' "$user" "$bridge_password" "$user" "$bridge_password" \
    "$user" "$bridge_password" >>"$plain"
done
for device in "${devices[@]}"; do
  password=$(secret)
  printf '%s:%s\n' "$device" "$password" >>"$plain"
  printf '%s %s\n' "$device" "$password" >>"$dir/mqtt-credentials"
  printf '%s\n' "$password" >"$dir/mqtt-password-$device"
done
mosquitto_passwd -U "$plain"  # hashes the plain passwords in place

# The device patterns as shipped, then the three bridge blocks for each bridge user.
acl="$dir/mosquitto.acl"
sed '/^user /,$d' "$here/acl.conf" >"$acl"
for user in "${bridges[@]}"; do
  sed -n '/^user /,$p' "$here/acl.conf" | sed "s/^user mqtt-bridge/user $user/" >>"$acl"
done
# Mosquitto started as root reads these as user mosquitto.
if [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1; then
  chown mosquitto: "$dir" "$plain" "$acl"
  chmod 700 "$dir"
  chmod 600 "$plain" "$acl"
  # The rest stays readable by this script's user only through root.
fi
echo "local-auth: $dir: ${#devices[@]} device users, ${#bridges[@]} bridge user(s) (+ -control, -acks), ACL from acl.conf"
