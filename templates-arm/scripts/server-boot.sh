#!/bin/bash
# Velociraptor server boot script for templates-arm/velociraptor.json.
#
# This file is the source of truth: ci/render-templates.py embeds it verbatim in the
# template (variable serverScript); the CustomScript extension runs it after a header,
# built by the template and delivered in protectedSettings, that exports the CT_*
# variables below. Run directly it installs and starts the server; sourced (as the tests
# do) it only defines the functions.
#
# Its only stdout line is CLOUDTEST_CA_B64=<base64 PEM>: the extension's status message
# carries it back through the authenticated ARM API (output caCertificate).
#
# Exported by the template header:
#   CT_VELOCIRAPTOR_VERSION  exact release, e.g. 0.77.2
#   CT_VELOCIRAPTOR_SHA256   SHA-256 of velociraptor-v<version>-linux-amd64
#   CT_ADMIN_USER            GUI administrator name
#   CT_ADMIN_PASSWORD        GUI administrator password (protectedSettings only)
#   CT_ENROLLMENT_NONCE      client enrollment nonce derived by the template (protectedSettings only)
#   CT_PRIVATE_IP            the server's static private address
#   CT_PUBLIC_HOST           the server's public IP
#   CT_FRONTEND_PORT         client frontend port
#   CT_GUI_PORT              GUI/API port
set -Eeuo pipefail

readonly CT_INSTALL_DIR=/opt/velociraptor
readonly CT_CONFIG_DIR=/etc/velociraptor
readonly CT_PINNED_NAME=VelociraptorServer
readonly CT_LOG=/var/log/cloudtest-boot.log

log() {
  printf '%s cloudtest-boot: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$CT_LOG"
}

# Fails unless $2 matches the extended regex $3; $1 names the value in the message.
require_match() {
  if [[ ! "$2" =~ $3 ]]; then
    log "invalid $1: '$2' does not match $3"
    echo "cloudtest: invalid $1" >&2
    return 1
  fi
}

validate_inputs() {
  require_match version "$CT_VELOCIRAPTOR_VERSION" '^[0-9]+\.[0-9]+\.[0-9]+$'
  require_match sha256 "$CT_VELOCIRAPTOR_SHA256" '^[a-f0-9]{64}$'
  require_match admin-user "$CT_ADMIN_USER" '^[A-Za-z0-9._-]{1,64}$'
  require_match nonce "$CT_ENROLLMENT_NONCE" '^[A-Za-z0-9-]{16,64}$'
  require_match public-host "$CT_PUBLIC_HOST" '^[A-Za-z0-9.:-]+$'
  require_match frontend-port "$CT_FRONTEND_PORT" '^[0-9]{1,5}$'
  require_match gui-port "$CT_GUI_PORT" '^[0-9]{1,5}$'
}

# Prints the RFC 7396 merge document for `velociraptor config generate --merge_file`.
# $1 is the instance's private address: the GUI and frontend bind to it, and the client
# (in the same VNet) reaches the frontend through it.
merge_document() {
  local private_ip="$1"
  require_match private-ip "$private_ip" '^[0-9.]+$'
  printf '{"Client":{"server_urls":["https://%s:%s/"],"use_self_signed_ssl":true,"pinned_server_name":"%s","nonce":"%s"},' \
    "$private_ip" "$CT_FRONTEND_PORT" "$CT_PINNED_NAME" "$CT_ENROLLMENT_NONCE"
  printf '"Frontend":{"hostname":"%s","bind_address":"%s","bind_port":%s},' \
    "$CT_PUBLIC_HOST" "$private_ip" "$CT_FRONTEND_PORT"
  printf '"GUI":{"bind_address":"%s","bind_port":%s,"public_url":"https://%s:%s/app/index.html"},' \
    "$private_ip" "$CT_GUI_PORT" "$CT_PUBLIC_HOST" "$CT_GUI_PORT"
  printf '"Datastore":{"location":"%s/datastore","filestore_directory":"%s/datastore"}}\n' \
    "$CT_INSTALL_DIR" "$CT_INSTALL_DIR"
}

install_binary() {
  local asset="velociraptor-v${CT_VELOCIRAPTOR_VERSION}-linux-amd64"
  local url="https://github.com/Velocidex/velociraptor/releases/download/v${CT_VELOCIRAPTOR_VERSION}/${asset}"
  mkdir -p "$CT_INSTALL_DIR"
  log "downloading $url"
  curl -fsSL --retry 20 --retry-delay 5 --retry-all-errors --connect-timeout 10 \
    -o "$CT_INSTALL_DIR/velociraptor.download" "$url"
  echo "${CT_VELOCIRAPTOR_SHA256}  $CT_INSTALL_DIR/velociraptor.download" | sha256sum -c - >>"$CT_LOG"
  install -m 0755 "$CT_INSTALL_DIR/velociraptor.download" /usr/local/bin/velociraptor
  rm -f "$CT_INSTALL_DIR/velociraptor.download"
}

# Prints the CA certificate from the generated config's Client section.
ca_certificate() {
  velociraptor --config "$CT_CONFIG_DIR/server.config.yaml" config show --json 2>>"$CT_LOG" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Client"]["ca_certificate"], end="")'
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
  local attempt
  for attempt in $(seq 1 60); do
    if curl -fsS --cacert "$CT_CONFIG_DIR/ca.pem" \
      --resolve "$CT_PINNED_NAME:$CT_FRONTEND_PORT:$CT_PRIVATE_IP" \
      "https://$CT_PINNED_NAME:$CT_FRONTEND_PORT/healthz" >/dev/null 2>&1; then
      log "frontend healthy after $attempt attempts"
      return 0
    fi
    sleep 5
  done
  log "frontend did not become healthy"
  echo "cloudtest: Velociraptor frontend did not answer /healthz" >&2
  return 1
}

main() {
  umask 077
  validate_inputs
  install_binary

  id velociraptor >/dev/null 2>&1 || useradd --system --home-dir "$CT_INSTALL_DIR" --shell /usr/sbin/nologin velociraptor
  mkdir -p "$CT_CONFIG_DIR" "$CT_INSTALL_DIR/datastore"
  merge_document "$CT_PRIVATE_IP" >"$CT_CONFIG_DIR/merge.json"
  velociraptor config generate --merge_file "$CT_CONFIG_DIR/merge.json" >"$CT_CONFIG_DIR/server.config.yaml" 2>>"$CT_LOG"
  ca_certificate >"$CT_CONFIG_DIR/ca.pem"

  velociraptor --config "$CT_CONFIG_DIR/server.config.yaml" user add --role administrator \
    "$CT_ADMIN_USER" "$CT_ADMIN_PASSWORD" >>"$CT_LOG" 2>&1
  unset CT_ADMIN_PASSWORD

  chown -R velociraptor:velociraptor "$CT_CONFIG_DIR" "$CT_INSTALL_DIR"
  chmod 0644 "$CT_CONFIG_DIR/ca.pem"
  write_unit
  systemctl daemon-reload >>"$CT_LOG" 2>&1
  systemctl enable --now velociraptor-server.service >>"$CT_LOG" 2>&1
  wait_healthy

  # The CA is public; the extension status is the authenticated channel to the deployment.
  printf 'CLOUDTEST_CA_B64=%s\n' "$(base64 -w0 "$CT_CONFIG_DIR/ca.pem")"
  log "server ready"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
