#!/bin/bash
# Velociraptor server boot script for templates-cfn/velociraptor.yaml.
#
# This file is the source of truth: ci/render-templates.py embeds it in the template's
# UserData, with templates-common/boot-lib.sh inlined at the include stanza, after a header
# (written by CloudFormation's Fn::Sub) that exports the CT_* variables below and those the
# library lists. Run directly it installs and starts the server; sourced (as the tests do)
# it only defines the functions.
#
# Exported by the template header, besides the library's:
#   CT_ADMIN_USER            GUI administrator name
#   CT_ADMIN_SECRET_ARN      Secrets Manager secret that holds the admin password
#   CT_REGION                AWS region of the stack
#   CT_PUBLIC_HOST           the server's Elastic IP
#   CT_GUI_PORT              GUI/API port
#   CT_READY_HANDLE          pre-signed URL of the ServerReady wait-condition handle
#   CT_ENROLL_HANDLE         pre-signed URL of the ClientEnrollment wait-condition handle
set -Eeuo pipefail

readonly CT_LOG_TO_STDERR=1 # stderr is the serial console (see the library)
# include: ../../templates-common/boot-lib.sh
# shellcheck source=SCRIPTDIR/../../templates-common/boot-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../templates-common/boot-lib.sh"

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
  say_boot_failed "server boot stopped at line $line"
  signal_handle "$CT_READY_HANDLE" FAILURE ca "" "server boot failed at line $line, see $CT_LOG" || true
}

admin_password() {
  aws secretsmanager get-secret-value --region "$CT_REGION" \
    --secret-id "$CT_ADMIN_SECRET_ARN" --query SecretString --output text
}

main() {
  trap 'on_failure $LINENO' ERR
  umask 077
  validate_server_inputs
  local private_ip
  private_ip="$(imds_get local-ipv4)"
  # Generous retries: egress starts once the Elastic IP is associated, after launch.
  install_binary 40
  generate_server_config "$private_ip"
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

  # The CA bound to this instance: cloudtest compares it, read back through
  # GetConsoleOutput, with the CA published through the wait condition.
  printf 'cloudtest-ca-sha256=%s\n' \
    "$(openssl x509 -in "$CT_CONFIG_DIR/ca.pem" -outform DER | sha256sum | cut -d' ' -f1)" >&2
  start_server "$private_ip"

  # The CA is public; the wait-condition handle is the authenticated channel to the stack.
  signal_handle "$CT_ENROLL_HANDLE" SUCCESS nonce "$nonce" "enrollment nonce"
  signal_handle "$CT_READY_HANDLE" SUCCESS ca "$ca_b64" "Velociraptor answered /healthz"
  log "server ready"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
