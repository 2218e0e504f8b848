#!/bin/bash
# Velociraptor client boot script for templates-cfn/velociraptor.yaml.
#
# This file is the source of truth: ci/render-templates.py embeds it verbatim in the
# client's UserData after a header (Fn::Sub) that exports the CT_* variables below.
# The client config is never fetched over the network: CloudFormation hands this
# instance the server's CA and enrollment nonce (wait-condition data the server signalled
# through the authenticated CloudFormation API) and the client rebuilds the config from
# them with the same pinned binary.
#
# Exported by the template header:
#   CT_VELOCIRAPTOR_VERSION  exact release, e.g. 0.77.2
#   CT_VELOCIRAPTOR_SHA256   SHA-256 of velociraptor-v<version>-linux-amd64
#   CT_SERVER_PRIVATE_IP     the server's private address in the VPC
#   CT_FRONTEND_PORT         client frontend port
#   CT_CA_DATA               ServerReady data, {"ca":"<base64 PEM>"}
#   CT_ENROLL_DATA           ClientEnrollment data, {"nonce":"<nonce>"}
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

require_match() {
  if [[ ! "$2" =~ $3 ]]; then
    log "invalid $1: '$2' does not match $3"
    return 1
  fi
}

# Prints the string value under key $2 of the JSON object $1.
json_field() {
  python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]], end="")' "$1" "$2"
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

install_binary() {
  local asset="velociraptor-v${CT_VELOCIRAPTOR_VERSION}-linux-amd64"
  local url="https://github.com/Velocidex/velociraptor/releases/download/v${CT_VELOCIRAPTOR_VERSION}/${asset}"
  mkdir -p "$CT_INSTALL_DIR"
  log "downloading $url"
  curl -fsSL --max-time 300 --retry 20 --retry-delay 5 --retry-all-errors --connect-timeout 10 \
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
  install_binary
  mkdir -p "$CT_CONFIG_DIR"

  local ca nonce scratch
  ca="$(json_field "$CT_CA_DATA" ca | base64 -d)"
  nonce="$(json_field "$CT_ENROLL_DATA" nonce)"
  scratch="$(mktemp -d)"
  client_merge_document "$ca" "$nonce" >"$scratch/merge.json"
  # A throwaway server config carries the merged Client section; only that section is kept.
  velociraptor config generate --merge_file "$scratch/merge.json" >"$scratch/generated.yaml"
  velociraptor --config "$scratch/generated.yaml" config client >"$CT_CONFIG_DIR/client.config.yaml"
  rm -rf "$scratch"

  write_unit
  systemctl daemon-reload
  systemctl enable --now velociraptor-client.service
  log "client started"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
