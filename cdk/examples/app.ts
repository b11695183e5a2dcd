/**
 * An example app with two stacks of the bridge, synthesized by `make test` (tests/cdk.rs):
 * - `BridgeDefaults`: the defaults, which is what `sam deploy` of infra/template.yaml makes (the parity test
 *   compares the two resource by resource and statement by statement);
 * - `BridgeWithAppPool`: the bridge in an app that has its own user pool (Plus plan, the triggers
 *   attached by the construct), identity pool roles, Cognito Streams stream and app event stream, with
 *   parameters set from props (the conditions they decide are gone from its template).
 *
 * BRIDGE_FUNCTIONS_DIR: the directory of the prebuilt zips (default target/release-artifacts/functions of the
 * repository). BRIDGE_BUILD=source builds them with cargo-lambda-cdk instead. BRIDGE_TEMPLATE_FILE: another
 * transformed template (the tests' drift check). CDK_OUTDIR: where the cloud assembly goes (default cdk.out).
 */
import * as path from 'path';
import { App, Stack } from 'aws-cdk-lib';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import { CognitoKinesisBridge, CognitoKinesisBridgeProps } from '../lib';

const root = path.resolve(__dirname, '..', '..', '..');
const code: CognitoKinesisBridgeProps =
  process.env.BRIDGE_BUILD === 'source'
    ? { build: 'source', manifestPath: path.join(root, 'Cargo.toml') }
    : { functionsDirectory: process.env.BRIDGE_FUNCTIONS_DIR ?? path.join(root, 'target', 'release-artifacts', 'functions') };
const templateFile = process.env.BRIDGE_TEMPLATE_FILE || undefined;

// CDK's built-in template validation repeats what `make infra-check` runs cfn-lint and checkov for on these
// templates, and reports the SAM template's own accepted warnings: off here.
const app = new App({ analyticsReporting: false, builtinCloudFormationValidation: false });
const env = { region: process.env.CDK_DEFAULT_REGION ?? 'us-east-1' };

const plain = new Stack(app, 'BridgeDefaults', { env });
new CognitoKinesisBridge(plain, 'Bridge', { ...code, templateFile });

const withPool = new Stack(app, 'BridgeWithAppPool', { env });
// User-activity logs (the bridge's default) need the Plus plan with threat protection.
const userPool = new cognito.UserPool(withPool, 'UserPool', {
  featurePlan: cognito.FeaturePlan.PLUS,
  standardThreatProtectionMode: cognito.StandardThreatProtectionMode.AUDIT_ONLY,
  signInAliases: { email: true },
  autoVerify: { email: true },
});
const identityRole = (id: string, amr: string) =>
  new iam.Role(withPool, id, {
    assumedBy: new iam.FederatedPrincipal(
      'cognito-identity.amazonaws.com',
      {
        StringEquals: { 'cognito-identity.amazonaws.com:aud': 'us-east-1:11111111-2222-3333-4444-555555555555' },
        'ForAnyValue:StringLike': { 'cognito-identity.amazonaws.com:amr': amr },
      },
      'sts:AssumeRoleWithWebIdentity',
    ),
  });
const stream = (id: string) =>
  new kinesis.Stream(withPool, id, { streamMode: kinesis.StreamMode.ON_DEMAND, encryption: kinesis.StreamEncryption.MANAGED });
new CognitoKinesisBridge(withPool, 'Bridge', {
  ...code,
  templateFile,
  userPool,
  identityPoolRoles: {
    authenticated: [identityRole('AuthenticatedRole', 'authenticated')],
    unauthenticated: [identityRole('GuestRole', 'unauthenticated')],
  },
  sourceStream: stream('CognitoStreamsStream'),
  appEventStream: stream('AppEventStream'),
  alarmEmail: 'ops@example.com',
  namePrefix: 'bridge',
  parameters: { BatchSize: 100, EnableWarehouseDelivery: 'true', ShareAttributes: 'email,locale', HashAttributes: 'email' },
});

app.synth();
