#!/bin/bash
# Velociraptor client boot script for templates-cfn/velociraptor.yaml.
#
# This file is the source of truth: ci/render-templates.py embeds it in the client's
# UserData, with templates-common/boot-lib.sh inlined at the include stanza, after a header
# (Fn::Sub) that exports the CT_* variables below and those the library lists.
# The client config is never fetched over the network: CloudFormation hands this
# instance the server's CA and enrollment nonce (wait-condition data the server signalled
# through the authenticated CloudFormation API) and the client rebuilds the config from
# them with the same pinned binary.
#
# Exported by the template header, besides the library's:
#   CT_SERVER_PRIVATE_IP     the server's private address in the VPC
#   CT_CA_DATA               ServerReady data, {"ca":"<base64 PEM>"}
#   CT_ENROLL_DATA           ClientEnrollment data, {"nonce":"<nonce>"}
set -Eeuo pipefail

readonly CT_LOG_TO_STDERR=1 # stderr is the serial console (see the library)
# include: ../../templates-common/boot-lib.sh
# shellcheck source=SCRIPTDIR/../../templates-common/boot-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../templates-common/boot-lib.sh"

# Prints the string value under key $2 of the JSON object $1.
json_field() {
  python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]], end="")' "$1" "$2"
}

main() {
  trap 'say_boot_failed "line $LINENO: $BASH_COMMAND exited $?"' ERR
  umask 077
  validate_client_inputs
  install_binary 20
  local ca nonce
  ca="$(json_field "$CT_CA_DATA" ca | base64 -d)"
  nonce="$(json_field "$CT_ENROLL_DATA" nonce)"
  start_client "$ca" "$nonce"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
