/**
 * The bridge in an Amplify Gen 2 backend: its user pool's sign-ups, sign-ins and token refreshes become
 * cognito-auth-event/v1 records (the triggers are attached to the Amplify pool), and the identity pool's
 * signed-in role may put app analytics (Amplify's Kinesis provider) on the bridge's app event stream.
 * Type-checked by `make test` against the pinned @aws-amplify/backend (cdk/package.json); docs/deploy-amplify-gen2.md.
 */
import { defineBackend } from '@aws-amplify/backend';
import { Fn, Stack } from 'aws-cdk-lib';
// In your app: `import { CognitoKinesisBridge } from 'cognito-kinesis-bridge-cdk';`
import { CognitoKinesisBridge } from '../../../lib';
import { auth } from './auth/resource';

const backend = defineBackend({ auth });
const { userPool, authenticatedUserIamRole } = backend.auth.resources;

// In the auth stack itself: the pool's triggers name the bridge's function and the bridge's invoke permission
// names the pool, which across two nested stacks would be a circular dependency.
const authStack = Stack.of(userPool);
const bridge = new CognitoKinesisBridge(authStack, 'CognitoKinesisBridge', {
  // The release's arm64 zips (sync-processor.zip ...), unpacked next to amplify/.
  functionsDirectory: 'cognito-kinesis-bridge/functions',
  userPool,
  identityPoolRoles: {
    // Signed-in users write app events. Add backend.auth.resources.unauthenticatedUserIamRole as
    // `unauthenticated` to let guests write too (anyone who knows the identity pool id can).
    authenticated: [authenticatedUserIamRole],
  },
  // A nested stack's name is too long for the functions' names: a short prefix, unique per sandbox and branch
  // (the first group of the auth stack's id).
  namePrefix: Fn.join('-', ['ckb', Fn.select(0, Fn.split('-', Fn.select(2, Fn.split('/', authStack.stackId))))]),
  parameters: {
    // User-activity logs (failed sign-ins, risk, IP) need the pool on the Plus plan with threat protection:
    // set "true" once it is (backend.auth.resources.cfnResources.cfnUserPool).
    UserActivityLogs: 'false',
  },
});

// What the front end reads from amplify_outputs.json (src/analytics.ts).
backend.addOutput({
  custom: {
    appEvents: {
      streamName: Fn.select(1, Fn.split('/', bridge.appEventSourceStreamArn)),
      region: authStack.region,
    },
  },
});
