#!/bin/bash
# Velociraptor server boot script for templates-cfn/velociraptor.yaml.
#
# This file is the source of truth: ci/render-templates.py embeds it verbatim in the
# template's UserData after a header (written by CloudFormation's Fn::Sub) that exports
# the CT_* variables below. Run directly it installs and starts the server; sourced
# (as the tests do) it only defines the functions.
#
# Exported by the template header:
#   CT_VELOCIRAPTOR_VERSION  exact release, e.g. 0.77.2
#   CT_VELOCIRAPTOR_SHA256   SHA-256 of velociraptor-v<version>-linux-amd64
#   CT_ADMIN_USER            GUI administrator name
#   CT_ADMIN_SECRET_ARN      Secrets Manager secret that holds the admin password
#   CT_REGION                AWS region of the stack
#   CT_PUBLIC_HOST           the server's Elastic IP
#   CT_FRONTEND_PORT         client frontend port
#   CT_GUI_PORT              GUI/API port
#   CT_READY_HANDLE          pre-signed URL of the ServerReady wait-condition handle
#   CT_ENROLL_HANDLE         pre-signed URL of the ClientEnrollment wait-condition handle
set -Eeuo pipefail

readonly CT_INSTALL_DIR=/opt/velociraptor
readonly CT_CONFIG_DIR=/etc/velociraptor
readonly CT_PINNED_NAME=VelociraptorServer
readonly CT_LOG=/var/log/cloudtest-boot.log

# Each line also goes to stderr, which cloud-init copies to the serial console that
# GetConsoleOutput reads: failure evidence after the instance is gone. Never log a secret.
log() {
  local line
  line="$(date -u +%Y-%m-%dT%H:%M:%SZ) cloudtest-boot: $*"
  printf '%s\n' "$line" >>"$CT_LOG"
  printf '%s\n' "$line" >&2
}

# Fails unless $2 matches the extended regex $3; $1 names the value in the message.
require_match() {
  if [[ ! "$2" =~ $3 ]]; then
    log "invalid $1: '$2' does not match $3"
    return 1
  fi
}

validate_inputs() {
  require_match version "$CT_VELOCIRAPTOR_VERSION" '^[0-9]+\.[0-9]+\.[0-9]+$'
  require_match sha256 "$CT_VELOCIRAPTOR_SHA256" '^[a-f0-9]{64}$'
  require_match admin-user "$CT_ADMIN_USER" '^[A-Za-z0-9._-]{1,64}$'
  require_match public-host "$CT_PUBLIC_HOST" '^[A-Za-z0-9.:-]+$'
  require_match frontend-port "$CT_FRONTEND_PORT" '^[0-9]{1,5}$'
  require_match gui-port "$CT_GUI_PORT" '^[0-9]{1,5}$'
}

# Prints the RFC 7396 merge document for `velociraptor config generate --merge_file`.
# $1 is the instance's private address: the GUI and frontend bind to it, and the client
# (in the same VPC) reaches the frontend through it.
merge_document() {
  local private_ip="$1"
  require_match private-ip "$private_ip" '^[0-9.]+$'
  printf '{"Client":{"server_urls":["https://%s:%s/"],"use_self_signed_ssl":true,"pinned_server_name":"%s"},' \
    "$private_ip" "$CT_FRONTEND_PORT" "$CT_PINNED_NAME"
  printf '"Frontend":{"hostname":"%s","bind_address":"%s","bind_port":%s},' \
    "$CT_PUBLIC_HOST" "$private_ip" "$CT_FRONTEND_PORT"
  printf '"GUI":{"bind_address":"%s","bind_port":%s,"public_url":"https://%s:%s/app/index.html"},' \
    "$private_ip" "$CT_GUI_PORT" "$CT_PUBLIC_HOST" "$CT_GUI_PORT"
  printf '"Datastore":{"location":"%s/datastore","filestore_directory":"%s/datastore"}}\n' \
    "$CT_INSTALL_DIR" "$CT_INSTALL_DIR"
}

imds_get() {
  local token
  token="$(curl -fsS --max-time 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \
    http://169.254.169.254/latest/api/token)"
  curl -fsS --max-time 5 -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}

# Sends one wait-condition signal; $1 handle URL, $2 status, $3 id, $4 data, $5 reason.
signal_handle() {
  local body
  body="$(printf '{"Status":"%s","Reason":"%s","UniqueId":"%s","Data":"%s"}' "$2" "$5" "$3" "$4")"
  curl -fsS --max-time 30 --retry 5 --retry-all-errors -X PUT -H 'Content-Type:' --data-binary "$body" "$1"
}

on_failure() {
  local line="$1"
  log "boot failed at line $line"
  signal_handle "$CT_READY_HANDLE" FAILURE ca "" "server boot failed at line $line, see $CT_LOG" || true
}

install_binary() {
  local asset="velociraptor-v${CT_VELOCIRAPTOR_VERSION}-linux-amd64"
  local url="https://github.com/Velocidex/velociraptor/releases/download/v${CT_VELOCIRAPTOR_VERSION}/${asset}"
  mkdir -p "$CT_INSTALL_DIR"
  log "downloading $url"
  # Generous retries: egress starts once the Elastic IP is associated, after launch.
  curl -fsSL --max-time 300 --retry 40 --retry-delay 5 --retry-all-errors --connect-timeout 10 \
    -o "$CT_INSTALL_DIR/velociraptor.download" "$url"
  echo "${CT_VELOCIRAPTOR_SHA256}  $CT_INSTALL_DIR/velociraptor.download" | sha256sum -c - >>"$CT_LOG"
  install -m 0755 "$CT_INSTALL_DIR/velociraptor.download" /usr/local/bin/velociraptor
  rm -f "$CT_INSTALL_DIR/velociraptor.download"
}

admin_password() {
  aws secretsmanager get-secret-value --region "$CT_REGION" \
    --secret-id "$CT_ADMIN_SECRET_ARN" --query SecretString --output text
}

# Prints one field of the generated config's Client section ($1: ca_certificate or nonce).
client_field() {
  velociraptor --config "$CT_CONFIG_DIR/server.config.yaml" config show --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Client"][sys.argv[1]], end="")' "$1"
}

write_unit() {
  cat >/etc/systemd/system/velociraptor-server.service <<UNIT
[Unit]
Description=Velociraptor server (cloudtest)
After=network-online.target
Wants=network-online.target

[Service]
User=velociraptor
Group=velociraptor
ExecStart=/usr/local/bin/velociraptor --config $CT_CONFIG_DIR/server.config.yaml frontend
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
}

# Waits until the frontend answers /healthz over TLS verified against the new CA.
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
  return 1
}

main() {
  trap 'on_failure $LINENO' ERR
  umask 077
  validate_inputs
  local private_ip
  private_ip="$(imds_get local-ipv4)"
  install_binary

  id velociraptor >/dev/null 2>&1 || useradd --system --home-dir "$CT_INSTALL_DIR" --shell /usr/sbin/nologin velociraptor
  mkdir -p "$CT_CONFIG_DIR" "$CT_INSTALL_DIR/datastore"
  merge_document "$private_ip" >"$CT_CONFIG_DIR/merge.json"
  velociraptor config generate --merge_file "$CT_CONFIG_DIR/merge.json" >"$CT_CONFIG_DIR/server.config.yaml"
  client_field ca_certificate >"$CT_CONFIG_DIR/ca.pem"
  # Read once, as root, before the data store changes owner, and checked: an empty nonce
  # would be signalled and the client would never enroll.
  local nonce ca_b64
  nonce="$(client_field nonce)"
  ca_b64="$(base64 -w0 "$CT_CONFIG_DIR/ca.pem")"
  if [[ -z "$nonce" || -z "$ca_b64" ]]; then
    log "the generated configuration has no client nonce or no CA"
    return 1
  fi

  local password
  password="$(admin_password)"
  velociraptor --config "$CT_CONFIG_DIR/server.config.yaml" user add --role administrator \
    "$CT_ADMIN_USER" "$password" >>"$CT_LOG" 2>&1
  unset password

  chown -R velociraptor:velociraptor "$CT_CONFIG_DIR" "$CT_INSTALL_DIR"
  chmod 0644 "$CT_CONFIG_DIR/ca.pem"
  # The CA bound to this instance: cloudtest compares it, read back through
  # GetConsoleOutput, with the CA published through the wait condition.
  printf 'cloudtest-ca-sha256=%s\n' \
    "$(openssl x509 -in "$CT_CONFIG_DIR/ca.pem" -outform DER | sha256sum | cut -d' ' -f1)" >&2
  write_unit
  systemctl daemon-reload
  systemctl enable --now velociraptor-server.service
  wait_healthy "$private_ip"

  # The CA is public; the wait-condition handle is the authenticated channel to the stack.
  signal_handle "$CT_ENROLL_HANDLE" SUCCESS nonce "$nonce" "enrollment nonce"
  signal_handle "$CT_READY_HANDLE" SUCCESS ca "$ca_b64" "Velociraptor answered /healthz"
  log "server ready"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
