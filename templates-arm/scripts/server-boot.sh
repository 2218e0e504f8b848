#!/bin/bash
# Velociraptor server boot script for templates-arm/velociraptor.json.
#
# This file is the source of truth: ci/render-templates.py embeds it in the template
# (variable serverScript), with templates-common/boot-lib.sh inlined at the include
# stanza; the CustomScript extension runs it after a header, built by the template and
# delivered in protectedSettings, that exports the CT_* variables below and those the
# library lists. Run directly it installs and starts the server; sourced (as the tests
# do) it only defines the functions.
#
# Its only stdout line is CLOUDTEST_CA_B64=<base64 PEM>: the extension's status message
# carries it back through the authenticated ARM API (output caCertificate).
#
# Exported by the template header, besides the library's:
#   CT_ADMIN_USER            GUI administrator name
#   CT_ADMIN_PASSWORD        GUI administrator password (protectedSettings only)
#   CT_ENROLLMENT_NONCE      client enrollment nonce derived by the template (protectedSettings only)
#   CT_PRIVATE_IP            the server's static private address
#   CT_PUBLIC_HOST           the server's public IP
#   CT_GUI_PORT              GUI/API port
set -Eeuo pipefail

readonly CT_LOG_TO_STDERR=0 # stdout and stderr are the extension status (see the library)
# include: ../../templates-common/boot-lib.sh
# shellcheck source=SCRIPTDIR/../../templates-common/boot-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../templates-common/boot-lib.sh"

main() {
  umask 077
  validate_server_inputs
  require_match nonce "$CT_ENROLLMENT_NONCE" '^[A-Za-z0-9-]{16,64}$'
  install_binary 20
  generate_server_config "$CT_PRIVATE_IP" "$CT_ENROLLMENT_NONCE"

  velociraptor --config "$CT_CONFIG_DIR/server.config.yaml" user add --role administrator \
    "$CT_ADMIN_USER" "$CT_ADMIN_PASSWORD" >>"$CT_LOG" 2>&1
  unset CT_ADMIN_PASSWORD

  start_server "$CT_PRIVATE_IP"

  # The CA is public; the extension status is the authenticated channel to the deployment.
  printf 'CLOUDTEST_CA_B64=%s\n' "$(base64 -w0 "$CT_CONFIG_DIR/ca.pem")"
  log "server ready"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
