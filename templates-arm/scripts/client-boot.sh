#!/bin/bash
# Velociraptor client boot script for templates-arm/velociraptor.json.
#
# This file is the source of truth: ci/render-templates.py embeds it in the template
# (variable clientScript), with templates-common/boot-lib.sh inlined at the include
# stanza; the client's CustomScript extension runs it after a header delivered in
# protectedSettings. The client config is never fetched over the network: ARM hands this
# VM the server extension's status message (which carries the CA) and the enrollment
# nonce, and the client rebuilds the config from them with the same pinned binary.
#
# Exported by the template header, besides the library's:
#   CT_SERVER_PRIVATE_IP     the server's static private address
#   CT_SERVER_STATUS_B64     base64 of the server extension's status message
#   CT_ENROLLMENT_NONCE      client enrollment nonce derived by the template
set -Eeuo pipefail

readonly CT_LOG_TO_STDERR=0 # stdout and stderr are the extension status (see the library)
# include: ../../templates-common/boot-lib.sh
# shellcheck source=SCRIPTDIR/../../templates-common/boot-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../templates-common/boot-lib.sh"

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

main() {
  trap 'say_boot_failed "line $LINENO: $BASH_COMMAND exited $?"' ERR
  umask 077
  validate_client_inputs
  require_match nonce "$CT_ENROLLMENT_NONCE" '^[A-Za-z0-9-]{16,64}$'
  install_binary 20
  local ca
  ca="$(server_ca)"
  start_client "$ca" "$CT_ENROLLMENT_NONCE"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
