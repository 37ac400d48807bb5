#!/usr/bin/env bash
# q4d seedbox installer: the completion hook and the label daemon, into your home, no root.
#
#   seedbox/install.sh --broker-host HOST --seedbox-id ID [--client NAME ...]   install or update
#   ~/.local/share/q4d-seedbox/install.sh --uninstall [--purge]                remove it again
#
# Run with --help for every option; docs/seedbox.md explains each step.
set -euo pipefail
umask 022

PROG=q4d-install
MARKER="q4d-seedbox: added by install.sh, removed by install.sh --uninstall"

# --python's default: the first of these on PATH that is 3.8 or newer (--help says so).
PYTHONS=(python3 python3.13 python3.12 python3.11 python3.10 python3.9 python3.8)

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
warn() { printf '%s: WARNING: %s\n' "$PROG" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

usage() {
  cat <<EOF
Usage: install.sh [options]                 install, or update an install (same options again)
       install.sh --uninstall [--purge]     remove everything install.sh added

Broker (the MQTT broker the bridge uses):
  --broker-host HOST            required; 127.0.0.1 with the bridge's broker_forward
  --broker-port PORT            default 1883 (8883 with --tls)
  --username USER               MQTT user name
  --password-file FILE          MQTT password: first line of FILE ("-": read it from stdin)
  --tls                         TLS to the broker (system CAs, or --ca-certs FILE)
  --ca-certs FILE
  --seedbox-id ID               required; the bridge's seedboxes[].id for this seedbox
  --topic-prefix PREFIX         the bridge's broker.topic_prefix (default q4d)
  --types-config FILE           Q4D Types.config to compute type codes on the seedbox

Torrent client (the hook is wired into it; the label daemon talks to it):
  --client NAME                 qbittorrent | rtorrent | transmission | deluge
  --client-url URL              WebUI/RPC address (defaults: qBittorrent http://127.0.0.1:8080,
                                Transmission http://127.0.0.1:9091/transmission/rpc,
                                Deluge http://127.0.0.1:8112/json; rTorrent has none:
                                scgi:///path/to/rpc.sock, scgi://127.0.0.1:5000 or https://host/RPC2)
  --client-user USER            WebUI/RPC user (Deluge's web UI has none)
  --client-password-file FILE   its password, first line of FILE ("-": stdin)
  --label-mode tag|category     how labels show in the client (default: tag; Deluge: category)
  --rtorrent-rc FILE            default ~/.rtorrent.rc
  --transmission-config DIR     transmission-daemon's config dir (default ~/.config/transmission-daemon)
  --replace-hook                take over the client's completion program if another one is set
                                (qBittorrent, Transmission); --uninstall puts the old one back
  --no-wire                     do not touch the torrent client (wire it by hand: docs/seedbox.md)

Installation:
  --python PATH                 the Python to run q4d with (default: the first of ${PYTHONS[0]},
                                ${PYTHONS[1]} ... ${PYTHONS[${#PYTHONS[@]} - 1]} on PATH that is 3.8 or newer)
  --wheel-dir DIR               install paho-mqtt from a paho_mqtt-2.x wheel in DIR (offline)
  --offline                     never download paho-mqtt; say what to do instead
  --service auto|systemd|cron|none
                                how the label daemon and a periodic outbox flush keep running
                                (auto: systemd --user if it works, else crontab if a cron
                                daemon runs, else none: it prints how to start q4d-labeld)
  --no-service                  same as --service none
  --keep-config                 keep an existing ~/.config/q4d/seedbox.conf as it is
  --uninstall                   remove what install.sh added (keeps a non-empty outbox)
  --purge                       with --uninstall: delete waiting outbox events too
  -h, --help
EOF
}

# --- options --------------------------------------------------------------------------

BROKER_HOST="" BROKER_PORT="" MQTT_USER="" MQTT_PASSWORD_FILE="" TLS=0 CA_CERTS=""
SEEDBOX_ID="" TOPIC_PREFIX="" TYPES_CONFIG=""
CLIENT="" CLIENT_URL="" CLIENT_USER="" CLIENT_PASSWORD_FILE="" LABEL_MODE=""
RTORRENT_RC="" TRANSMISSION_CONFIG="" REPLACE_HOOK=0 WIRE=1
OPT_PYTHON="" WHEEL_DIR="" OFFLINE=0 PAHO="" SERVICE=auto KEEP_CONFIG=0 UNINSTALL=0 PURGE=0

need_value() { [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"; }

while [[ $# -gt 0 ]]; do
  opt=$1
  if [[ $opt == --*=* ]]; then
    set -- "${opt%%=*}" "${opt#*=}" "${@:2}"
    opt=$1
  fi
  case $opt in
    --broker-host) need_value "$@"; BROKER_HOST=$2; shift ;;
    --broker-port) need_value "$@"; BROKER_PORT=$2; shift ;;
    --username) need_value "$@"; MQTT_USER=$2; shift ;;
    --password-file) need_value "$@"; MQTT_PASSWORD_FILE=$2; shift ;;
    --tls) TLS=1 ;;
    --ca-certs) need_value "$@"; CA_CERTS=$2; shift ;;
    --seedbox-id) need_value "$@"; SEEDBOX_ID=$2; shift ;;
    --topic-prefix) need_value "$@"; TOPIC_PREFIX=$2; shift ;;
    --types-config) need_value "$@"; TYPES_CONFIG=$2; shift ;;
    --client) need_value "$@"; CLIENT=$2; shift ;;
    --client-url) need_value "$@"; CLIENT_URL=$2; shift ;;
    --client-user) need_value "$@"; CLIENT_USER=$2; shift ;;
    --client-password-file) need_value "$@"; CLIENT_PASSWORD_FILE=$2; shift ;;
    --label-mode) need_value "$@"; LABEL_MODE=$2; shift ;;
    --rtorrent-rc) need_value "$@"; RTORRENT_RC=$2; shift ;;
    --transmission-config) need_value "$@"; TRANSMISSION_CONFIG=$2; shift ;;
    --replace-hook) REPLACE_HOOK=1 ;;
    --no-wire) WIRE=0 ;;
    --python) need_value "$@"; OPT_PYTHON=$2; shift ;;
    --wheel-dir) need_value "$@"; WHEEL_DIR=$2; shift ;;
    --offline) OFFLINE=1 ;;
    --service) need_value "$@"; SERVICE=$2; shift ;;
    --no-service) SERVICE=none ;;
    --keep-config) KEEP_CONFIG=1 ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $opt (see --help)" ;;
  esac
  shift
done

# Empty arrays under `set -u` need bash 4.4 (every current distribution has 5.x).
if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
  die "bash 4.4 or newer is needed (this is $BASH_VERSION)"
fi

# --- where things go ------------------------------------------------------------------

[[ -n ${HOME:-} && $HOME == /* ]] || die "HOME must be set to an absolute path"
case $HOME in *$'\n'* | *\"* | *\\* | *%*) die "HOME contains a character q4d cannot use: $HOME" ;; esac
HOME=${HOME%/}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
TREE=$HOME/.local/share/q4d-seedbox
BIN=$HOME/.local/bin
CONF_DIR=$HOME/.config/q4d
CONF=$CONF_DIR/seedbox.conf
STATE_DIR=$HOME/.local/state/q4d
OUTBOX=$STATE_DIR/outbox
UNIT_DIR=$HOME/.config/systemd/user
MANIFEST=$TREE/install.state
WIRING=$TREE/wiring.json
WATCHDOG=$TREE/q4d-labeld-cron
LEFTOVER=$STATE_DIR/.q4d-install-dirs
WRAPPERS=(q4d-hook q4d-hook-deluge q4d-labeld)
UNITS=(q4d-labeld.service q4d-flush.service q4d-flush.timer)

CREATED_DIRS=() # directories this run created (recorded in the manifest)
OUR_FILES=()    # files outside the tree this install owns (config, password copies, units)
CHANGED=0       # something the running label daemon reads changed: restart it

TMP_FILES=()
INSTALLING=0
cleanup() {
  # Even a run that stopped half-way records what it created, for --uninstall.
  if [[ $INSTALLING == 1 && -d $TREE ]]; then
    INSTALLING=0
    write_manifest || true
  fi
  [[ ${#TMP_FILES[@]} -eq 0 ]] || rm -f -- "${TMP_FILES[@]}"
}
trap cleanup EXIT

# Single-quote a string for sh.
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# put_file MODE TARGET < content: writes only when content or mode differ.
put_file() {
  local mode=$1 target=$2 tmp
  tmp=$(mktemp "${target%/*}/.q4d-install.XXXXXX")
  TMP_FILES+=("$tmp")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  if [[ -f $target && ! -L $target ]] && cmp -s "$tmp" "$target" &&
    [[ $(stat -c %a "$target") == "$(stat -c %a "$tmp")" ]]; then
    rm -f -- "$tmp"
    return 0
  fi
  mv -f -- "$tmp" "$target"
  PUT_CHANGED=1
}

# mkdir_tracked DIR [MODE]: mkdir -p, remembering every directory that did not exist.
mkdir_tracked() {
  local dir=$1 mode=${2:-} missing=() d
  d=$dir
  while [[ ! -e $d && $d != "$HOME" && $d == "$HOME"/* ]]; do
    missing=("$d" "${missing[@]}")
    d=${d%/*}
  done
  mkdir -p -- "$dir"
  [[ -z $mode || ${#missing[@]} -eq 0 ]] || chmod "$mode" -- "$dir"
  CREATED_DIRS+=("${missing[@]}")
}

abs_path() {
  case $1 in
    /*) printf '%s' "$1" ;;
    *) printf '%s/%s' "$PWD" "$1" ;;
  esac
}

helper() { PYTHONPATH=$TREE "$PY" -m q4d_seedbox.installer "$@"; }

# --- manifest -------------------------------------------------------------------------

M_PYTHON="" M_SERVICE="" M_CRONTAB_NEW=0 M_DIRS=() M_FILES=()
read_manifest() {
  [[ -f $MANIFEST ]] || return 0
  local key value
  while IFS=' ' read -r key value; do
    case $key in
      python) M_PYTHON=$value ;;
      service) M_SERVICE=$value ;;
      crontab-new) M_CRONTAB_NEW=$value ;;
      dir) M_DIRS+=("$value") ;;
      file) M_FILES+=("$value") ;;
    esac
  done <"$MANIFEST"
}

contains() {
  local needle=$1 item
  shift
  for item in "$@"; do [[ $item == "$needle" ]] && return 0; done
  return 1
}

write_manifest() {
  local dirs=("${M_DIRS[@]}") files=() d f
  for d in "${CREATED_DIRS[@]}"; do contains "$d" "${dirs[@]}" || dirs+=("$d"); done
  for f in "${M_FILES[@]}" "${OUR_FILES[@]}"; do
    contains "$f" "${files[@]}" || files+=("$f")
  done
  put_file 600 "$MANIFEST" < <(
    echo "# q4d-seedbox install state, read by install.sh --uninstall"
    echo "python $PY"
    echo "service $SERVICE_DONE"
    echo "crontab-new $CRONTAB_NEW"
    for d in "${dirs[@]}"; do echo "dir $d"; done
    for f in "${files[@]}"; do echo "file $f"; done
  )
}

# --- Python ---------------------------------------------------------------------------

find_python() {
  local candidates=() candidate path
  if [[ -n $OPT_PYTHON ]]; then
    candidates=("$OPT_PYTHON")
  else
    candidates=("${PYTHONS[@]}")
  fi
  for candidate in "${candidates[@]}"; do
    path=$(command -v -- "$candidate" 2>/dev/null) || continue
    path=$(abs_path "$path")
    if "$path" -c 'import sys; sys.exit(sys.version_info < (3, 8))' 2>/dev/null; then
      PY=$path
      return 0
    fi
  done
  die "no Python >= 3.8 found${OPT_PYTHON:+ at $OPT_PYTHON} (pass --python PATH)"
}

# --- the tree and the wrappers --------------------------------------------------------

install_tree() {
  local src rel wanted=()
  [[ $SRC != "$TREE" ]] || return 0 # running the installed copy: the tree is in place
  [[ -d $SRC/q4d_seedbox && -d $SRC/bin ]] || die "$SRC is not a q4d seedbox/ directory"
  while IFS= read -r -d '' src; do
    rel=${src#"$SRC"/}
    wanted+=("$rel")
    mkdir -p -- "$TREE/${rel%/*}"
    if [[ -x $src ]]; then put_file 755 "$TREE/$rel" <"$src"; else put_file 644 "$TREE/$rel" <"$src"; fi
  done < <(find "$SRC/bin" "$SRC/q4d_seedbox" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z)
  put_file 755 "$TREE/install.sh" <"$SRC/install.sh"
  # Modules an older version had and this one does not.
  while IFS= read -r -d '' src; do
    rel=${src#"$TREE"/}
    contains "$rel" "${wanted[@]}" || {
      rm -f -- "$src"
      PUT_CHANGED=1
    }
  done < <(find "$TREE/bin" "$TREE/q4d_seedbox" -type f ! -path '*/__pycache__/*' -print0)
}

vendor_paho() {
  local stage=$TREE/.vendor.new out
  if helper has-paho --root "$TREE"; then
    say "paho-mqtt 2.x: importable by $PY"
    PAHO=ok
    return 0
  fi
  rm -rf -- "$stage"
  local pip=("$PY" -m pip install --no-cache-dir --disable-pip-version-check --no-input
    --quiet --target "$stage")
  if [[ -n $WHEEL_DIR ]]; then
    [[ -d $WHEEL_DIR ]] || die "--wheel-dir $WHEEL_DIR is not a directory"
    if "$PY" -m pip --version >/dev/null 2>&1; then
      out=$("${pip[@]}" --no-index --find-links "$WHEEL_DIR" 'paho-mqtt>=2,<3' 2>&1) ||
        die "pip could not install paho-mqtt from $WHEEL_DIR: $out"
    else
      helper unpack-wheel --wheel-dir "$WHEEL_DIR" --target "$stage" || die "no usable wheel"
    fi
  elif [[ $OFFLINE == 1 ]]; then
    PAHO=missing
  elif ! "$PY" -m pip --version >/dev/null 2>&1; then
    say "$PY has no pip"
    PAHO=missing
  elif ! out=$("${pip[@]}" --timeout 15 --retries 1 'paho-mqtt>=2,<3' 2>&1); then
    say "pip could not download paho-mqtt: $(printf '%s' "$out" | tail -n 1)"
    PAHO=missing
  fi
  if [[ ${PAHO:-} == missing ]]; then
    rm -rf -- "$stage"
    warn "paho-mqtt is not installed (no network?). The hook still saves every completion" \
      "in the outbox, but nothing is sent and q4d-labeld cannot run until it is there." \
      "Get paho_mqtt-2.*-py3-none-any.whl (pip download 'paho-mqtt>=2,<3' elsewhere)" \
      "and run install.sh again with --wheel-dir DIR."
    return 0
  fi
  rm -rf -- "$TREE/vendor"
  mv -- "$stage" "$TREE/vendor"
  PUT_CHANGED=1
  helper has-paho --root "$TREE" || die "paho-mqtt was installed in $TREE/vendor but does not import"
  say "paho-mqtt 2.x: installed in $TREE/vendor"
  PAHO=ok
}

install_wrappers() {
  local name target
  mkdir_tracked "$BIN"
  for name in "${WRAPPERS[@]}"; do
    target=$BIN/$name
    if [[ -e $target || -L $target ]] && ! grep -qs "$MARKER" "$target"; then
      die "$target exists and is not q4d's; move it away and run install.sh again"
    fi
    put_file 755 "$target" <<EOF
#!/bin/sh
# $MARKER
# Runs $name from $TREE with the Python it was installed for.
Q4D_SEEDBOX_CONFIG=\${Q4D_SEEDBOX_CONFIG:-$(sq "$CONF")}
export Q4D_SEEDBOX_CONFIG
exec $(sq "$PY") $(sq "$TREE/bin/$name") "\$@"
EOF
  done
}

# --- config ---------------------------------------------------------------------------

# Secret from a file (referenced) or stdin (stored next to the config, mode 600).
STDIN_USED=0
secret_file() { # secret_file VALUE NAME -> prints the password_file to write
  local value=$1 name=$2 line=""
  if [[ $value == - ]]; then
    [[ $STDIN_USED == 0 ]] || die "only one password can come from stdin"
    STDIN_USED=1
    IFS= read -r line || [[ -n $line ]] || die "no password on stdin for $name"
    put_file 600 "$CONF_DIR/$name.password" <<<"$line"
    OUR_FILES+=("$CONF_DIR/$name.password")
    SECRET_PATH=$CONF_DIR/$name.password
    return 0
  fi
  [[ -r $value && -f $value ]] || die "cannot read the password file $value"
  if [[ -n $(find "$value" -maxdepth 0 -perm /077 2>/dev/null) ]]; then
    warn "$value is readable by group or others: chmod 600 it"
  fi
  SECRET_PATH=$(abs_path "$value")
}

check_value() { # no line breaks in anything written into the INI file
  case $2 in *$'\n'* | *$'\r'*) die "$1 must not contain a line break" ;; esac
}

write_config() {
  local mqtt_pw="" client_pw="" labels_url=$CLIENT_URL
  mkdir_tracked "$CONF_DIR" 700
  PUT_CHANGED=0
  if [[ -n $MQTT_PASSWORD_FILE ]]; then
    secret_file "$MQTT_PASSWORD_FILE" mqtt
    mqtt_pw=$SECRET_PATH
  fi
  if [[ -n $CLIENT_PASSWORD_FILE ]]; then
    secret_file "$CLIENT_PASSWORD_FILE" "${CLIENT:-client}"
    client_pw=$SECRET_PATH
  fi
  CLIENT_PW_FILE=$client_pw
  if [[ -z $labels_url ]]; then
    case $CLIENT in
      qbittorrent) labels_url=http://127.0.0.1:8080 ;;
      transmission) labels_url=http://127.0.0.1:9091/transmission/rpc ;;
      deluge) labels_url=http://127.0.0.1:8112/json ;;
    esac
  fi
  CLIENT_URL_EFFECTIVE=$labels_url
  LABELS=0
  [[ -z $CLIENT || -z $labels_url ]] || LABELS=1
  if [[ $CLIENT == rtorrent && -z $labels_url ]]; then
    say "rTorrent without --client-url: no label daemon (it needs rTorrent's XML-RPC)"
  fi
  if [[ -f $CONF && $KEEP_CONFIG == 1 ]]; then
    say "config: kept $CONF as it is (--keep-config)"
    grep -q '^\[labels\]' "$CONF" || LABELS=0
    return 0
  fi
  local v
  for v in "$BROKER_HOST" "$MQTT_USER" "$CA_CERTS" "$TOPIC_PREFIX" "$TYPES_CONFIG" \
    "$CLIENT_URL" "$CLIENT_USER"; do
    check_value "an option value" "$v"
  done
  put_file 600 "$CONF" < <(
    echo "# q4d seedbox config, written by install.sh: running it again rewrites this file"
    echo "# (unless --keep-config). Every key: docs/seedbox.md#the-config-file"
    echo "[mqtt]"
    echo "host = $BROKER_HOST"
    echo "port = $BROKER_PORT"
    echo "seedbox_id = $SEEDBOX_ID"
    [[ -z $MQTT_USER ]] || echo "username = $MQTT_USER"
    [[ -z $mqtt_pw ]] || echo "password_file = $mqtt_pw"
    [[ $TLS == 0 ]] || echo "tls = true"
    [[ -z $CA_CERTS ]] || echo "ca_certs = $(abs_path "$CA_CERTS")"
    [[ -z $TOPIC_PREFIX ]] || echo "topic_prefix = $TOPIC_PREFIX"
    echo
    echo "[hook]"
    echo "outbox = $OUTBOX"
    echo "log_file = $STATE_DIR/hook.log"
    [[ -z $TYPES_CONFIG ]] || echo "types_config = $(abs_path "$TYPES_CONFIG")"
    if [[ $LABELS == 1 ]]; then
      echo
      echo "[labels]"
      echo "client = $CLIENT"
      echo "url = $labels_url"
      [[ -z $CLIENT_USER ]] || echo "username = $CLIENT_USER"
      [[ -z $client_pw ]] || echo "password_file = $client_pw"
      [[ -z $LABEL_MODE ]] || echo "mode = $LABEL_MODE"
    fi
  )
  OUR_FILES+=("$CONF")
  if [[ $PUT_CHANGED == 1 ]]; then
    CHANGED=1
    say "config: wrote $CONF (mode 600)"
  else
    say "config: $CONF is up to date"
  fi
}

# --- the torrent client ---------------------------------------------------------------

wire_client() {
  local args=(wire --state "$WIRING" --client "$CLIENT")
  case $CLIENT in
    deluge) args+=(--hook "$BIN/q4d-hook-deluge") ;;
    *) args+=(--hook "$BIN/q4d-hook") ;;
  esac
  [[ -z $CLIENT_URL_EFFECTIVE ]] || args+=(--url "$CLIENT_URL_EFFECTIVE")
  [[ -z $CLIENT_USER ]] || args+=(--user "$CLIENT_USER")
  [[ -z $CLIENT_PW_FILE ]] || args+=(--password-file "$CLIENT_PW_FILE")
  [[ $REPLACE_HOOK == 0 ]] || args+=(--replace)
  [[ $LABELS == 0 ]] || args+=(--labels)
  case $CLIENT in
    rtorrent) args+=(--rtorrent-rc "$(abs_path "${RTORRENT_RC:-$HOME/.rtorrent.rc}")") ;;
    transmission)
      args+=(--transmission-settings
        "$(abs_path "${TRANSMISSION_CONFIG:-$HOME/.config/transmission-daemon}")/settings.json")
      ;;
  esac
  local status=0
  helper "${args[@]}" || status=$?
  case $status in
    0) ;;
    3) die "the hook is not wired (see above); everything else is installed" ;;
    *) die "wiring the hook into $CLIENT failed (see above); fix it and run install.sh again" ;;
  esac
}

# --- the label daemon and the periodic flush ------------------------------------------

systemd_works() {
  command -v systemctl >/dev/null 2>&1 && systemctl --user show-environment >/dev/null 2>&1
}

# systemd ExecStart= quoting: % and $ are special; " and \ are refused earlier via HOME.
sd_quote() {
  local s=${1//%/%%}
  s=${s//\$/\$\$}
  printf '"%s"' "$s"
}

setup_systemd() {
  local d before=()
  mkdir_tracked "$UNIT_DIR"
  PUT_CHANGED=0
  if [[ $LABELS == 1 ]]; then
    put_file 644 "$UNIT_DIR/q4d-labeld.service" <<EOF
# $MARKER
[Unit]
Description=q4d label daemon: puts the bridge's labels on torrents

[Service]
ExecStart=$(sd_quote "$BIN/q4d-labeld")
Restart=always
RestartSec=10

[Install]
WantedBy=default.target
EOF
    OUR_FILES+=("$UNIT_DIR/q4d-labeld.service")
  elif [[ -f $UNIT_DIR/q4d-labeld.service ]]; then
    systemctl --user disable --now q4d-labeld.service >/dev/null 2>&1 || true
    rm -f -- "$UNIT_DIR/q4d-labeld.service"
    PUT_CHANGED=1
  fi
  put_file 644 "$UNIT_DIR/q4d-flush.service" <<EOF
# $MARKER
[Unit]
Description=q4d: send completions waiting in the hook's outbox

[Service]
Type=oneshot
ExecStart=$(sd_quote "$BIN/q4d-hook") flush
# 1: something is still waiting (the broker is down); the timer tries again.
SuccessExitStatus=1
EOF
  put_file 644 "$UNIT_DIR/q4d-flush.timer" <<EOF
# $MARKER
[Unit]
Description=q4d: send the hook's outbox every 10 minutes

[Timer]
OnBootSec=2min
OnUnitActiveSec=10min

[Install]
WantedBy=timers.target
EOF
  OUR_FILES+=("$UNIT_DIR/q4d-flush.service" "$UNIT_DIR/q4d-flush.timer")
  [[ $PUT_CHANGED == 0 ]] || systemctl --user daemon-reload
  # `enable` makes *.wants/ directories; they are ours to remove if they were not there.
  for d in "$UNIT_DIR/default.target.wants" "$UNIT_DIR/timers.target.wants"; do
    [[ -e $d ]] || before+=("$d")
  done
  if [[ $LABELS == 1 ]]; then
    systemctl --user enable --now q4d-labeld.service q4d-flush.timer >/dev/null 2>&1 ||
      die "systemctl --user enable --now q4d-labeld.service q4d-flush.timer failed"
    [[ $CHANGED == 0 ]] || systemctl --user try-restart q4d-labeld.service
  else
    systemctl --user enable --now q4d-flush.timer >/dev/null 2>&1 ||
      die "systemctl --user enable --now q4d-flush.timer failed"
  fi
  for d in "${before[@]}"; do [[ ! -d $d ]] || CREATED_DIRS+=("$d"); done
  say "service: systemd --user units q4d-labeld.service and q4d-flush.timer are enabled"
  say "service: run 'loginctl enable-linger $(id -un)' (if allowed) to keep them running while logged out"
}

labeld_pid() { # the running q4d-labeld started from the crontab watchdog, if any
  local pid
  pid=$(cat "$STATE_DIR/labeld.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q q4d-labeld || return 1
  printf '%s' "$pid"
}

# This install's running q4d-labeld processes, however they were started (by hand, the
# watchdog, systemd): the wrapper execs "$PY $TREE/bin/q4d-labeld", so argv[1] tells.
labeld_pids() {
  local dir argv=()
  for dir in /proc/[0-9]*; do
    [[ -O $dir ]] || continue
    { mapfile -d '' -t argv <"$dir/cmdline"; } 2>/dev/null || continue
    [[ ${argv[1]:-} != "$TREE/bin/q4d-labeld" ]] || printf '%s\n' "${dir#/proc/}"
  done
}

stop_labelds() {
  local pids=() i
  mapfile -t pids < <(labeld_pids)
  [[ ${#pids[@]} -gt 0 ]] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    [[ -n $(labeld_pids) ]] || break
    sleep 0.1
  done
  rm -f -- "$STATE_DIR/labeld.pid"
  say "service: stopped q4d-labeld (pid ${pids[*]})"
}

start_cron_labeld() {
  local i pid
  setsid "$WATCHDOG" </dev/null >/dev/null 2>&1 &
  for ((i = 0; i < 50; i++)); do
    pid=$(labeld_pid) && {
      say "service: q4d-labeld runs (pid $pid; log $STATE_DIR/labeld.log)"
      return 0
    }
    sleep 0.1
  done
  warn "q4d-labeld did not start; see $STATE_DIR/labeld.log"
}

# Whether a cron daemon runs: "running", "stopped", or "unknown" where /proc hides
# other users' processes (hidepid), as on many shared seedboxes.
cron_daemon() {
  local f comm
  if [[ ! -r /proc/1/comm ]]; then
    echo unknown
    return 0
  fi
  for f in /proc/[0-9]*/comm; do
    { read -r comm <"$f"; } 2>/dev/null || continue
    case $comm in cron | crond | fcron | cronie)
      echo running
      return 0
      ;;
    esac
  done
  echo stopped
}

CRONTAB_NEW=0
edit_crontab() { # edit_crontab BODY|"" : sets or removes our block in the user's crontab
  local body=$1 current had=1 new bodyfile
  current=$(crontab -l 2>/dev/null) || had=0
  [[ $had == 1 ]] || current=""
  if [[ -n $body ]]; then
    bodyfile=$(mktemp)
    TMP_FILES+=("$bodyfile")
    printf '%s\n' "$body" >"$bodyfile"
    new=$(printf '%s\n' "$current" | sed '${/^$/d;}' | helper block --set "$bodyfile")
    [[ $had == 1 ]] || CRONTAB_NEW=1
  else
    new=$(printf '%s\n' "$current" | helper block)
  fi
  [[ $new != "$current" ]] || return 0
  if [[ -z $new && -z $body && $M_CRONTAB_NEW == 1 ]]; then
    crontab -r 2>/dev/null || true
  else
    printf '%s\n' "$new" | crontab -
  fi
}

# What sends waiting completions when nothing flushes the outbox on a schedule.
no_schedule() {
  printf '%s' "The bridge sends waiting completions each time it connects, and each new" \
    " completion sends those before it. To send them now: $(sq "$BIN/q4d-hook") flush"
}

setup_cron() {
  local body labeld=""
  PUT_CHANGED=0
  put_file 755 "$WATCHDOG" <<EOF
#!/bin/sh
# $MARKER
# Started by cron (@reboot and every 5 minutes): starts q4d-labeld unless it runs already.
state=$(sq "$STATE_DIR")
mkdir -p "\$state" || exit 1
exec flock -n "\$state/labeld.lock" sh -c 'echo "\$\$" >"\$1/labeld.pid"; exec "\$2" >>"\$1/labeld.log" 2>&1' \\
  q4d-labeld "\$state" $(sq "$BIN/q4d-labeld")
EOF
  [[ $PUT_CHANGED == 0 ]] || CHANGED=1
  body="*/10 * * * * $(sq "$BIN/q4d-hook") flush >/dev/null 2>&1"
  if [[ $LABELS == 1 ]]; then
    body="@reboot $(sq "$WATCHDOG")
*/5 * * * * $(sq "$WATCHDOG")
$body"
  fi
  edit_crontab "$body"
  if [[ $LABELS == 1 ]]; then
    [[ $CHANGED == 0 ]] || stop_labelds
    # One started by hand (under --service none, say) would fight the watchdog's over
    # the broker session: the watchdog's is the one that stays.
    labeld_pid >/dev/null || {
      stop_labelds
      start_cron_labeld
    }
  else
    stop_labelds # [labels] is gone from the config
  fi
  case $(cron_daemon) in
    running)
      [[ $LABELS == 0 ]] ||
        say "service: crontab starts q4d-labeld at boot and checks on it every 5 minutes"
      say "service: crontab runs 'q4d-hook flush' every 10 minutes"
      ;;
    unknown)
      say "service: the crontab lines are in place, but whether a cron daemon runs them" \
        "cannot be seen here (other users' processes are hidden); if $STATE_DIR/labeld.log" \
        "shows no restart after a reboot, none does"
      ;;
    stopped)
      [[ $LABELS == 0 ]] || labeld="q4d-labeld runs now, but nothing restarts it. "
      warn "no cron daemon runs here: the crontab lines do nothing until one does." \
        "${labeld}Nothing flushes the outbox on a schedule. $(no_schedule)"
      ;;
  esac
}

# --service none, or auto with no service manager: q4d-labeld is the user's to start;
# one running from this install is restarted when what it runs changed (--python).
hand_labeld() {
  local pids=() start i
  start="nohup $(sq "$BIN/q4d-labeld") >>$(sq "$STATE_DIR/labeld.log") 2>&1 </dev/null &"
  mapfile -t pids < <(labeld_pids)
  if [[ $LABELS == 0 ]]; then
    stop_labelds
  elif [[ ${#pids[@]} -gt 0 && $CHANGED == 0 ]]; then
    say "service: q4d-labeld runs (pid ${pids[*]}); nothing restarts it if it stops"
  elif [[ ${#pids[@]} -gt 0 ]]; then
    stop_labelds
    nohup "$BIN/q4d-labeld" >>"$STATE_DIR/labeld.log" 2>&1 </dev/null &
    for ((i = 0; i < 50; i++)); do
      mapfile -t pids < <(labeld_pids)
      [[ ${#pids[@]} -eq 0 ]] || break
      sleep 0.1
    done
    say "service: restarted q4d-labeld with $PY (pid ${pids[*]:-?}; log $STATE_DIR/labeld.log)"
  else
    say "service: start q4d-labeld now, and again after a reboot: $start"
  fi
}

manual_service() { # manual_service WHY
  warn "no service manager here ($1): nothing restarts q4d-labeld, and nothing flushes" \
    "the outbox on a schedule. $(no_schedule) (for a scheduler your provider offers:" \
    "docs/seedbox.md#running-the-label-daemon-persistently)."
  hand_labeld
}

remove_service() { # remove_service MODE
  local unit
  case $1 in
    systemd)
      if command -v systemctl >/dev/null 2>&1; then
        systemctl --user disable --now "${UNITS[@]}" >/dev/null 2>&1 || true
      fi
      for unit in "${UNITS[@]}"; do rm -f -- "$UNIT_DIR/$unit"; done
      if command -v systemctl >/dev/null 2>&1; then
        systemctl --user daemon-reload >/dev/null 2>&1 || true
      fi
      say "service: removed the systemd --user units"
      ;;
    cron)
      if command -v crontab >/dev/null 2>&1; then edit_crontab ""; fi
      stop_labelds
      rm -f -- "$WATCHDOG"
      say "service: removed the crontab lines"
      ;;
    manual | none) stop_labelds ;; # the service set up instead starts its own
  esac
}

setup_service() {
  local mode=$SERVICE why=""
  if [[ $mode == auto ]]; then
    if systemd_works; then
      mode=systemd
    elif ! command -v crontab >/dev/null 2>&1; then
      why="systemctl --user does not work, and there is no crontab command"
    elif ! command -v flock >/dev/null 2>&1 || ! command -v setsid >/dev/null 2>&1; then
      why="systemctl --user does not work, and there is no flock or setsid for crontab"
    elif [[ $(cron_daemon) == stopped ]]; then
      why="systemctl --user does not work, and crontab exists but no cron daemon runs"
    else
      mode=cron
    fi
    [[ -z $why ]] || mode=manual
  fi
  [[ -z $M_SERVICE || $M_SERVICE == "$mode" ]] || remove_service "$M_SERVICE"
  case $mode in
    systemd)
      systemd_works || die "--service systemd: 'systemctl --user' does not work here"
      setup_systemd
      ;;
    cron)
      command -v crontab >/dev/null 2>&1 || die "--service cron: no crontab command"
      command -v flock >/dev/null 2>&1 || die "--service cron: no flock command (util-linux)"
      setup_cron
      ;;
    manual) manual_service "$why" ;;
    none)
      say "service: none set up (--no-service): nothing keeps q4d-labeld running or" \
        "flushes the outbox on a schedule. $(no_schedule)"
      hand_labeld
      ;;
    *) die "--service must be auto, systemd, cron or none" ;;
  esac
  SERVICE_DONE=$mode
}

# --- uninstall ------------------------------------------------------------------------

# install.sh as the user can run it once this install is gone.
repo_install_sh() {
  if [[ $SRC == "$TREE" ]]; then printf 'seedbox/install.sh'; else sq "$SRC/install.sh"; fi
}

waiting() { # files in the outbox that are not the outbox's own bookkeeping
  find "$OUTBOX" -mindepth 1 ! -name .sequence ! -name .lock ! -name .sequence.lock | wc -l
}

# Nothing installed, but an uninstall may have kept the outbox (LEFTOVER, written then,
# says so and lists the directories it had made): --purge deletes it.
uninstall_kept_outbox() {
  local dirs=() i n
  if [[ ! -d $OUTBOX ]]; then
    say "nothing to remove: no install.sh install in $TREE"
    return 0
  fi
  n=$(waiting)
  if [[ ! -f $LEFTOVER ]]; then # a hand install's, say: not install.sh's to delete
    say "nothing to remove: no install.sh install in $TREE. $OUTBOX ($n file(s))" \
      "is not one an uninstall kept: left as it is"
    return 0
  fi
  if [[ $PURGE == 0 ]]; then
    warn "nothing is installed, but $OUTBOX still holds $n completion(s) an uninstall" \
      "kept. Install again to send them, or delete them: $(repo_install_sh) --uninstall --purge"
    return 0
  fi
  mapfile -t dirs <"$LEFTOVER"
  rm -rf -- "$OUTBOX"
  rm -f -- "$LEFTOVER"
  for ((i = ${#dirs[@]} - 1; i >= 0; i--)); do rmdir -- "${dirs[i]}" 2>/dev/null || true; done
  say "purged: deleted $OUTBOX and the $n completion(s) in it"
}

uninstall() {
  if [[ ! -f $MANIFEST ]]; then
    uninstall_kept_outbox
    return 0
  fi
  read_manifest
  PY=${M_PYTHON:-python3}
  remove_service "$M_SERVICE"
  if [[ -f $WIRING ]]; then
    helper unwire --state "$WIRING" ||
      warn "could not unwire the torrent client (see above); remove the hook by hand"
  fi
  local name f pending=()
  for name in "${WRAPPERS[@]}"; do
    if grep -qs "$MARKER" "$BIN/$name"; then rm -f -- "$BIN/$name"; fi
  done
  for f in "${M_FILES[@]}"; do rm -f -- "$f"; done
  rm -f -- "$STATE_DIR"/hook.log "$STATE_DIR"/hook.log.1 "$STATE_DIR"/labeld.log \
    "$STATE_DIR"/labeld.pid "$STATE_DIR"/labeld.lock "$LEFTOVER"
  if [[ -d $OUTBOX ]]; then
    rm -f -- "$OUTBOX"/.lock "$OUTBOX"/.sequence.lock "$OUTBOX"/.*.tmp "$OUTBOX"/.probe-*
    # .sequence (the event counter) stays with kept events, so numbering continues.
    while IFS= read -r -d '' f; do pending+=("$f"); done < <(
      find "$OUTBOX" -mindepth 1 ! -name .sequence -print0
    )
    if [[ ${#pending[@]} -gt 0 && $PURGE == 0 ]]; then
      warn "kept $OUTBOX: ${#pending[@]} completion(s) never reached the broker." \
        "To send them, install again ($(repo_install_sh) with your options): the install" \
        "sends them. To delete them: $(repo_install_sh) --uninstall --purge"
    else
      rm -rf -- "$OUTBOX"
    fi
  fi
  rm -rf -- "$TREE"
  local i left=()
  for ((i = ${#M_DIRS[@]} - 1; i >= 0; i--)); do
    rmdir -- "${M_DIRS[i]}" 2>/dev/null || left=("${M_DIRS[i]}" "${left[@]}")
  done
  # A kept outbox: --uninstall --purge deletes it, or the next install adopts these
  # directories as its own again. The file is written even with none: it marks the
  # outbox as one install.sh kept.
  if [[ -d $OUTBOX ]]; then
    if [[ ${#left[@]} -gt 0 ]]; then printf '%s\n' "${left[@]}"; fi >"$LEFTOVER"
  fi
  say "uninstalled"
}

# Completions that wait in the outbox (kept by an uninstall, or saved while paho-mqtt
# was missing) go out now.
flush_outbox() {
  local out
  [[ $PAHO == ok && -n $(find "$OUTBOX" -maxdepth 1 -name '*.msg' -print -quit) ]] || return 0
  if out=$(Q4D_SEEDBOX_CONFIG=$CONF "$BIN/q4d-hook" flush 2>&1); then
    say "outbox: sent the completions that were waiting (${out##*$'\n'})"
  else
    warn "outbox: completions wait that could not be sent now (${out##*$'\n'})." \
      "$(no_schedule)"
  fi
}

# --- main -----------------------------------------------------------------------------

if [[ $UNINSTALL == 1 ]]; then
  uninstall
  exit 0
fi

[[ -n $BROKER_HOST ]] || die "--broker-host is required (see --help)"
[[ $SEEDBOX_ID =~ ^[a-z0-9][a-z0-9_-]{0,62}$ ]] ||
  die "--seedbox-id is required: lowercase letters, digits, '-' or '_', as in the bridge's seedboxes[].id"
[[ -n $BROKER_PORT ]] || { if [[ $TLS == 1 ]]; then BROKER_PORT=8883; else BROKER_PORT=1883; fi; }
if [[ ! $BROKER_PORT =~ ^[0-9]+$ ]] || ((BROKER_PORT < 1 || BROKER_PORT > 65535)); then
  die "--broker-port must be 1-65535"
fi
case $CLIENT in "" | qbittorrent | rtorrent | transmission | deluge) ;; *)
  die "--client must be qbittorrent, rtorrent, transmission or deluge" ;;
esac
case $LABEL_MODE in "" | tag | category) ;; *) die "--label-mode must be tag or category" ;; esac
[[ -z $TYPES_CONFIG || -f $TYPES_CONFIG ]] || die "--types-config $TYPES_CONFIG: no such file"
[[ -z $WHEEL_DIR ]] || WHEEL_DIR=$(abs_path "$WHEEL_DIR")
case $SERVICE in auto | systemd | cron | none) ;; *) die "--service must be auto, systemd, cron or none" ;; esac

find_python
say "installing into $TREE with $PY ($("$PY" -c 'import platform; print(platform.python_version())'))"
read_manifest
[[ -z $M_SERVICE ]] || CRONTAB_NEW=$M_CRONTAB_NEW
if [[ -f $LEFTOVER ]]; then
  while IFS= read -r dir; do CREATED_DIRS+=("$dir"); done <"$LEFTOVER"
  rm -f -- "$LEFTOVER"
fi

PUT_CHANGED=0
SERVICE_DONE=${M_SERVICE:-none}
INSTALLING=1
mkdir_tracked "$TREE"
install_tree
vendor_paho
"$PY" -m compileall -q "$TREE/q4d_seedbox" >/dev/null 2>&1 || true
install_wrappers
[[ $PUT_CHANGED == 0 ]] || CHANGED=1
mkdir_tracked "$STATE_DIR" 700
mkdir_tracked "$OUTBOX" 700
write_config
if [[ -n $CLIENT && $WIRE == 1 ]]; then
  wire_client
elif [[ -f $WIRING && $WIRE == 1 ]]; then
  helper unwire --state "$WIRING" # --client dropped since the last run
fi
setup_service
INSTALLING=0
write_manifest
flush_outbox
if [[ $PAHO == ok ]]; then
  say "done. Check the setup with: $BIN/q4d-hook test"
else
  say "done, without paho-mqtt (see the WARNING above)"
fi
