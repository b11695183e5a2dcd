#!/usr/bin/env bash
# Attaches the auth trigger forwarder to an EXISTING Cognito user pool (a stack deployed with ExistingUserPoolId).
#
# Usage: infra/attach-triggers.sh <user-pool-id> <trigger-function-arn> [--dry-run]
#   The function ARN is the stack output AuthTriggerForwarderArn. The stack already grants
#   cognito-idp.amazonaws.com lambda:InvokeFunction on it for that pool (AuthTriggerInvokePermission).
#   --dry-run prints the update-user-pool input instead of sending it.
#
# RISK, read before running: UpdateUserPool is not a patch. Every setting you leave out of the request is reset
# to its default (for example the MFA configuration, verification messages, e-mail and SMS settings, the
# deletion protection, the existing triggers). This script therefore reads the pool with describe-user-pool,
# keeps every setting UpdateUserPool accepts, merges LambdaConfig (PreSignUp, PostConfirmation,
# PreAuthentication, PostAuthentication, and PreTokenGenerationConfig at V2_0; other triggers such as custom
# message or custom auth stay as they are) and sends the whole configuration back. It replaces any function
# already attached to those five triggers: if the pool already uses one of them for its own logic, do not run
# this, chain the functions instead. Settings that DescribeUserPool does not return cannot be passed back, and
# settings that this AWS CLI's update-user-pool does not know yet are dropped (and then reset): use a current
# CLI. MFA: TOTP settings live in SetUserPoolMfaConfig and are not part of this call; check them afterwards
# with get-user-pool-mfa-config. Test on a copy of the pool first, keep the saved describe output (its path is
# printed) to roll back, run with --dry-run first and review the LambdaConfig before/after it prints.
#
# Also needed for user-activity logs: the pool must be on the Plus feature plan with threat protection in
# audit-only or full-function mode (UserPoolTier PLUS, AdvancedSecurityMode AUDIT or ENFORCED); the stack's
# AWS::Cognito::LogDeliveryConfiguration sends its userAuthEvents logs to the stack's log group.
# A pre token generation trigger at V2_0 also needs the Essentials or Plus plan.
#
# Needs: bash, the AWS CLI v2 and jq; credentials allowed cognito-idp:DescribeUserPool and UpdateUserPool.
set -euo pipefail

usage() { sed -n '4,7p' "$0" >&2; exit 2; }
[[ $# -ge 2 && $# -le 3 ]] || usage
pool_id=$1
function_arn=$2
dry_run=false
if [[ $# -eq 3 ]]; then
  [[ $3 == --dry-run ]] || usage
  dry_run=true
fi
[[ $pool_id =~ ^[A-Za-z0-9-]+_[0-9A-Za-z]+$ ]] || { echo "not a user pool id: $pool_id" >&2; exit 2; }
[[ $function_arn == arn:*:lambda:*:function:* ]] || { echo "not a Lambda function ARN: $function_arn" >&2; exit 2; }
command -v aws >/dev/null || { echo "the AWS CLI is required" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is required" >&2; exit 2; }

work=$(mktemp -d)
before="$work/describe-user-pool.json"
aws cognito-idp describe-user-pool --user-pool-id "$pool_id" --output json >"$before"
echo "saved the pool's current settings to $before (keep it to roll back)" >&2

# Keep exactly the fields this CLI's UpdateUserPool accepts (its input skeleton lists them, so newer settings
# are carried over too); read-only ones (Arn, dates, counts, Domain, SchemaAttributes, UsernameAttributes,
# AliasAttributes, ...) are dropped. Id and Name come back as UserPoolId and PoolName.
aws cognito-idp update-user-pool --generate-cli-skeleton input >"$work/skeleton.json"
jq --arg arn "$function_arn" --slurpfile skeleton "$work/skeleton.json" '
  ($skeleton[0] | keys) as $accepted
  | .UserPool
  | . + {UserPoolId: .Id, PoolName: .Name}
  | with_entries(select(.key as $k | $accepted | index($k)))
  | with_entries(select(.value != null))
  # DescribeUserPool still returns the deprecated UnusedAccountValidityDays next to
  # Policies.PasswordPolicy.TemporaryPasswordValidityDays; sending both back is refused.
  | if .AdminCreateUserConfig then .AdminCreateUserConfig |= del(.UnusedAccountValidityDays) else . end
  | .LambdaConfig = ((.LambdaConfig // {})
      + {
          PreSignUp: $arn,
          PostConfirmation: $arn,
          PreAuthentication: $arn,
          PostAuthentication: $arn,
          PreTokenGenerationConfig: {LambdaArn: $arn, LambdaVersion: "V2_0"}
        }
      | del(.PreTokenGeneration))
' "$before" >"$work/update-user-pool.json"
for key in UserPoolId PoolName; do
  jq -e --arg k "$key" 'has($k)' "$work/update-user-pool.json" >/dev/null \
    || { echo "this AWS CLI's update-user-pool does not take $key; upgrade the CLI" >&2; exit 1; }
done

# Name every trigger whose current function is about to be replaced by a different one.
jq -r --arg arn "$function_arn" '
  .UserPool.LambdaConfig // {}
  | {PreSignUp, PostConfirmation, PreAuthentication, PostAuthentication,
     PreTokenGeneration: (.PreTokenGenerationConfig.LambdaArn // .PreTokenGeneration)}
  | to_entries[] | select(.value != null and .value != $arn) | "\(.key) \(.value)"
' "$before" | while read -r trigger current; do
  echo "WARNING: $trigger currently invokes $current; it will invoke $function_arn instead" >&2
done

echo "LambdaConfig before:" >&2
jq '.UserPool.LambdaConfig // {}' "$before" >&2
echo "LambdaConfig after:" >&2
jq '.LambdaConfig' "$work/update-user-pool.json" >&2

if $dry_run; then
  cat "$work/update-user-pool.json"
  echo "dry run: nothing sent; input is in $work/update-user-pool.json" >&2
  exit 0
fi

aws cognito-idp update-user-pool --cli-input-json "file://$work/update-user-pool.json"
echo "triggers attached to $pool_id; previous settings are in $before" >&2
