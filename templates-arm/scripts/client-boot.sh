#!/bin/bash
# Velociraptor client boot script for templates-arm/velociraptor.json.
#
# This file is the source of truth: ci/render-templates.py embeds it verbatim in the
# template (variable clientScript); the client's CustomScript extension runs it after a
# header delivered in protectedSettings. The client config is never fetched over the
# network: ARM hands this VM the server extension's status message (which carries the
# CA) and the enrollment nonce, and the client rebuilds the config from them with the
# same pinned binary.
#
# Exported by the template header:
#   CT_VELOCIRAPTOR_VERSION  exact release, e.g. 0.77.2
#   CT_VELOCIRAPTOR_SHA256   SHA-256 of velociraptor-v<version>-linux-amd64
#   CT_SERVER_PRIVATE_IP     the server's static private address
#   CT_FRONTEND_PORT         client frontend port
#   CT_SERVER_STATUS_B64     base64 of the server extension's status message
#   CT_ENROLLMENT_NONCE      client enrollment nonce derived by the template
set -Eeuo pipefail

readonly CT_INSTALL_DIR=/opt/velociraptor
readonly CT_CONFIG_DIR=/etc/velociraptor
readonly CT_PINNED_NAME=VelociraptorServer
readonly CT_LOG=/var/log/cloudtest-boot.log

log() {
  printf '%s cloudtest-boot: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >>"$CT_LOG"
}

require_match() {
  if [[ ! "$2" =~ $3 ]]; then
    log "invalid $1: '$2' does not match $3"
    echo "cloudtest: invalid $1" >&2
    return 1
  fi
}

# Prints the CA PEM from the server's status message (line CLOUDTEST_CA_B64=...).
server_ca() {
  local b64
  b64="$(base64 -d <<<"$CT_SERVER_STATUS_B64" | sed -n 's/.*CLOUDTEST_CA_B64=\([A-Za-z0-9+\/=]*\).*/\1/p' | head -n 1)"
  if [[ -z "$b64" ]]; then
    echo "cloudtest: the server status carries no CLOUDTEST_CA_B64 line" >&2
    return 1
  fi
  base64 -d <<<"$b64"
}

# Prints the merge document that turns a freshly generated config into this
# deployment's client config; $1 is the CA PEM.
client_merge_document() {
  python3 - "$1" "$CT_ENROLLMENT_NONCE" "$CT_SERVER_PRIVATE_IP" "$CT_FRONTEND_PORT" "$CT_PINNED_NAME" <<'PY'
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

write_unit() {
  cat >/etc/systemd/system/velociraptor-client.service <<UNIT
[Unit]
Description=Velociraptor client (cloudtest)
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/velociraptor --config $CT_CONFIG_DIR/client.config.yaml client
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
UNIT
}

main() {
  umask 077
  require_match version "$CT_VELOCIRAPTOR_VERSION" '^[0-9]+\.[0-9]+\.[0-9]+$'
  require_match sha256 "$CT_VELOCIRAPTOR_SHA256" '^[a-f0-9]{64}$'
  require_match server-ip "$CT_SERVER_PRIVATE_IP" '^[0-9.]+$'
  require_match frontend-port "$CT_FRONTEND_PORT" '^[0-9]{1,5}$'
  require_match nonce "$CT_ENROLLMENT_NONCE" '^[A-Za-z0-9-]{16,64}$'
  install_binary
  mkdir -p "$CT_CONFIG_DIR"

  local ca scratch
  ca="$(server_ca)"
  scratch="$(mktemp -d)"
  client_merge_document "$ca" >"$scratch/merge.json"
  # A throwaway server config carries the merged Client section; only that section is kept.
  velociraptor config generate --merge_file "$scratch/merge.json" >"$scratch/generated.yaml" 2>>"$CT_LOG"
  velociraptor --config "$scratch/generated.yaml" config client >"$CT_CONFIG_DIR/client.config.yaml" 2>>"$CT_LOG"
  rm -rf "$scratch"

  write_unit
  systemctl daemon-reload >>"$CT_LOG" 2>&1
  systemctl enable --now velociraptor-client.service >>"$CT_LOG" 2>&1
  log "client started"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
