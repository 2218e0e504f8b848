# shellcheck shell=bash
# Shared part of the four boot scripts, templates-{cfn,arm}/scripts/{server,client}-boot.sh.
#
# Never deployed as a file: ci/render-templates.py inlines it in place of each script's
# `# include:` stanza, so every template still carries one self-contained script. In the
# repository the stanza sources this file, for shellcheck and for the tests.
#
# Exported by every template header:
#   CT_VELOCIRAPTOR_VERSION  exact release, e.g. 0.77.2
#   CT_VELOCIRAPTOR_SHA256   SHA-256 of velociraptor-v<version>-linux-amd64
#   CT_FRONTEND_PORT         client frontend port
# Set by the including script:
#   CT_LOG_TO_STDERR  1 on AWS: stderr reaches the serial console GetConsoleOutput reads,
#                     failure evidence after the instance is gone, so log lines and command
#                     output go there too.
#                     0 on Azure: stdout and stderr become the CustomScript extension's
#                     status message, which the client and cloudtest parse; log lines and
#                     command output stay in $CT_LOG, stderr only gets value-free notes.
# Never log a secret.
: "${CT_LOG_TO_STDERR:?set by the boot script before the include}"

readonly CT_INSTALL_DIR=/opt/velociraptor
readonly CT_CONFIG_DIR=/etc/velociraptor
readonly CT_PINNED_NAME=VelociraptorServer
readonly CT_LOG=/var/log/cloudtest-boot.log

log() {
  local line
  line="$(date -u +%Y-%m-%dT%H:%M:%SZ) cloudtest-boot: $*"
  printf '%s\n' "$line" >>"$CT_LOG"
  if [[ "$CT_LOG_TO_STDERR" == 1 ]]; then
    printf '%s\n' "$line" >&2
  fi
}

# On Azure, prints "cloudtest: $1" to stderr (the extension status): $1 must name no value.
# On AWS the log line written just before already reached the console.
note() {
  if [[ "$CT_LOG_TO_STDERR" != 1 ]]; then
    printf 'cloudtest: %s\n' "$1" >&2
  fi
}

# Says once, on stderr, why the boot stopped: `cloudtest-boot-failed: <reason>`. On AWS that
# is the serial console, which cloudtest reads while it waits for the client to enroll, so a
# failed boot ends the wait at once. Reasons name files and commands, never a secret value.
CT_BOOT_FAILURE_SAID=0
say_boot_failed() {
  if [[ "$CT_BOOT_FAILURE_SAID" == 0 ]]; then
    CT_BOOT_FAILURE_SAID=1
    printf '%s cloudtest-boot: boot failed: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$CT_LOG"
    printf 'cloudtest-boot-failed: %s\n' "$*" >&2
  fi
}

# Runs a command whose stderr goes to the console on AWS and to $CT_LOG on Azure.
quiet_stderr() {
  if [[ "$CT_LOG_TO_STDERR" == 1 ]]; then
    "$@"
  else
    "$@" 2>>"$CT_LOG"
  fi
}

# Fails unless $2 matches the extended regex $3; $1 names the value in the message.
require_match() {
  if [[ ! "$2" =~ $3 ]]; then
    log "invalid $1: '$2' does not match $3"
    note "invalid $1"
    return 1
  fi
}

validate_server_inputs() {
  require_match version "$CT_VELOCIRAPTOR_VERSION" '^[0-9]+\.[0-9]+\.[0-9]+$'
  require_match sha256 "$CT_VELOCIRAPTOR_SHA256" '^[a-f0-9]{64}$'
  require_match admin-user "$CT_ADMIN_USER" '^[A-Za-z0-9._-]{1,64}$'
  require_match public-host "$CT_PUBLIC_HOST" '^[A-Za-z0-9.:-]+$'
  require_match frontend-port "$CT_FRONTEND_PORT" '^[0-9]{1,5}$'
  require_match gui-port "$CT_GUI_PORT" '^[0-9]{1,5}$'
}

validate_client_inputs() {
  require_match version "$CT_VELOCIRAPTOR_VERSION" '^[0-9]+\.[0-9]+\.[0-9]+$'
  require_match sha256 "$CT_VELOCIRAPTOR_SHA256" '^[a-f0-9]{64}$'
  require_match server-ip "$CT_SERVER_PRIVATE_IP" '^[0-9.]+$'
  require_match frontend-port "$CT_FRONTEND_PORT" '^[0-9]{1,5}$'
}

# Downloads the pinned release, checks its SHA-256 and installs it; $1 is curl's --retry.
install_binary() {
  local retries="$1"
  local asset="velociraptor-v${CT_VELOCIRAPTOR_VERSION}-linux-amd64"
  local url="https://github.com/Velocidex/velociraptor/releases/download/v${CT_VELOCIRAPTOR_VERSION}/${asset}"
  mkdir -p "$CT_INSTALL_DIR"
  log "downloading $url"
  if ! curl -fsSL --max-time 300 --retry "$retries" --retry-delay 5 --retry-all-errors --connect-timeout 10 \
    -o "$CT_INSTALL_DIR/velociraptor.download" "$url"; then
    say_boot_failed "downloading $asset failed"
    return 1
  fi
  if ! echo "${CT_VELOCIRAPTOR_SHA256}  $CT_INSTALL_DIR/velociraptor.download" | sha256sum -c - >>"$CT_LOG"; then
    say_boot_failed "$asset failed its SHA-256 check (expected $CT_VELOCIRAPTOR_SHA256)"
    return 1
  fi
  install -m 0755 "$CT_INSTALL_DIR/velociraptor.download" /usr/local/bin/velociraptor
  rm -f "$CT_INSTALL_DIR/velociraptor.download"
}

# Prints the RFC 7396 merge document for `velociraptor config generate --merge_file`.
# $1 is the instance's private address: the GUI and frontend bind to it, and the client
# (in the same network) reaches the frontend through it. $2, if given, is the enrollment
# nonce (Azure derives it in the template; on AWS Velociraptor generates it).
merge_document() {
  local private_ip="$1" nonce="${2:-}" nonce_field=""
  require_match private-ip "$private_ip" '^[0-9.]+$'
  if [[ -n "$nonce" ]]; then
    printf -v nonce_field ',"nonce":"%s"' "$nonce"
  fi
  printf '{"Client":{"server_urls":["https://%s:%s/"],"use_self_signed_ssl":true,"pinned_server_name":"%s"%s},' \
    "$private_ip" "$CT_FRONTEND_PORT" "$CT_PINNED_NAME" "$nonce_field"
  printf '"Frontend":{"hostname":"%s","bind_address":"%s","bind_port":%s},' \
    "$CT_PUBLIC_HOST" "$private_ip" "$CT_FRONTEND_PORT"
  printf '"GUI":{"bind_address":"%s","bind_port":%s,"public_url":"https://%s:%s/app/index.html"},' \
    "$private_ip" "$CT_GUI_PORT" "$CT_PUBLIC_HOST" "$CT_GUI_PORT"
  printf '"Datastore":{"location":"%s/datastore","filestore_directory":"%s/datastore"}}\n' \
    "$CT_INSTALL_DIR" "$CT_INSTALL_DIR"
}

# Prints one field of the generated config's Client section ($1: ca_certificate or nonce).
client_field() {
  quiet_stderr velociraptor --config "$CT_CONFIG_DIR/server.config.yaml" config show --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Client"][sys.argv[1]], end="")' "$1"
}

# Creates the service user, generates server.config.yaml from merge_document "$@" and
# extracts the CA to ca.pem. The data store still belongs to root afterwards.
generate_server_config() {
  id velociraptor >/dev/null 2>&1 || useradd --system --home-dir "$CT_INSTALL_DIR" --shell /usr/sbin/nologin velociraptor
  mkdir -p "$CT_CONFIG_DIR" "$CT_INSTALL_DIR/datastore"
  merge_document "$@" >"$CT_CONFIG_DIR/merge.json"
  quiet_stderr velociraptor config generate --merge_file "$CT_CONFIG_DIR/merge.json" >"$CT_CONFIG_DIR/server.config.yaml"
  client_field ca_certificate >"$CT_CONFIG_DIR/ca.pem"
}

# Prints the merge document that turns a freshly generated config into this
# deployment's client config; $1 CA PEM, $2 nonce.
client_merge_document() {
  python3 - "$1" "$2" "$CT_SERVER_PRIVATE_IP" "$CT_FRONTEND_PORT" "$CT_PINNED_NAME" <<'PY'
import json, sys
ca, nonce, ip, port, pinned = sys.argv[1:6]
print(json.dumps({"Client": {
    "server_urls": [f"https://{ip}:{port}/"],
    "ca_certificate": ca,
    "nonce": nonce,
    "use_self_signed_ssl": True,
    "pinned_server_name": pinned,
    "writeback_linux": "/etc/velociraptor/velociraptor.writeback.yaml",
}}))
PY
}

# Prints the systemd unit of velociraptor-$1.service ($1: server or client).
unit_file() {
  local role="$1" account="" command restart
  case "$role" in
    server)
      account=$'User=velociraptor\nGroup=velociraptor\n'
      command="--config $CT_CONFIG_DIR/server.config.yaml frontend"
      restart=$'Restart=on-failure\nRestartSec=5'
      ;;
    client)
      command="--config $CT_CONFIG_DIR/client.config.yaml client"
      restart=$'Restart=always\nRestartSec=10'
      ;;
    *)
      log "unknown unit role $role"
      return 1
      ;;
  esac
  cat <<UNIT
[Unit]
Description=Velociraptor $role (cloudtest)
After=network-online.target
Wants=network-online.target

[Service]
${account}ExecStart=/usr/local/bin/velociraptor $command
$restart

[Install]
WantedBy=multi-user.target
UNIT
}

# Installs, enables and starts velociraptor-$1.service.
start_unit() {
  unit_file "$1" >"/etc/systemd/system/velociraptor-$1.service"
  if [[ "$CT_LOG_TO_STDERR" == 1 ]]; then
    systemctl daemon-reload
    systemctl enable --now "velociraptor-$1.service"
  else
    systemctl daemon-reload >>"$CT_LOG" 2>&1
    systemctl enable --now "velociraptor-$1.service" >>"$CT_LOG" 2>&1
  fi
}

# Waits until the frontend at private address $1 answers /healthz over TLS verified
# against the new CA.
wait_healthy() {
  local private_ip="$1" attempt
  for attempt in $(seq 1 60); do
    if curl -fsS --max-time 10 --cacert "$CT_CONFIG_DIR/ca.pem" \
      --resolve "$CT_PINNED_NAME:$CT_FRONTEND_PORT:$private_ip" \
      "https://$CT_PINNED_NAME:$CT_FRONTEND_PORT/healthz" >/dev/null 2>&1; then
      log "frontend healthy after $attempt attempts"
      return 0
    fi
    sleep 5
  done
  log "frontend did not become healthy"
  note "Velociraptor frontend did not answer /healthz"
  return 1
}

# Hands the config and data store to the service user, starts the server and waits until
# its frontend at private address $1 is healthy.
start_server() {
  chown -R velociraptor:velociraptor "$CT_CONFIG_DIR" "$CT_INSTALL_DIR"
  chmod 0644 "$CT_CONFIG_DIR/ca.pem"
  start_unit server
  wait_healthy "$1"
}

# Builds the client config from CA PEM $1 and nonce $2 with the pinned binary (a
# throwaway server config carries the merged Client section; only that section is kept),
# then starts the client service.
start_client() {
  local scratch
  mkdir -p "$CT_CONFIG_DIR"
  scratch="$(mktemp -d)"
  client_merge_document "$1" "$2" >"$scratch/merge.json"
  quiet_stderr velociraptor config generate --merge_file "$scratch/merge.json" >"$scratch/generated.yaml"
  quiet_stderr velociraptor --config "$scratch/generated.yaml" config client >"$CT_CONFIG_DIR/client.config.yaml"
  rm -rf "$scratch"
  start_unit client
  log "client started"
}
