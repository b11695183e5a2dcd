/**
 * The bridge as a CDK construct: infra/template.yaml after the SAM transform, included whole with CfnInclude (so
 * every resource, IAM statement, alarm, dashboard and parameter of the SAM template is here by construction),
 * its parameters set from props, and each function's code swapped for a prebuilt arm64 zip or for code that
 * cargo-lambda-cdk builds from source.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Stack, Token } from 'aws-cdk-lib';
import * as cfninc from 'aws-cdk-lib/cloudformation-include';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { Json, specialize } from './specialize';

export { specialize } from './specialize';

/**
 * The transformed template this package ships (written by `make cdk` from infra/template.yaml), beside lib/ (run
 * from source) or beside dist/ (compiled).
 */
export const DEFAULT_TEMPLATE_FILE =
  [path.join(__dirname, '..', 'template', 'bridge.template.json'), path.join(__dirname, '..', '..', 'template', 'bridge.template.json')]
    .find((f) => fs.existsSync(f)) ?? path.join(__dirname, '..', 'template', 'bridge.template.json');

/** The parameter that stands for `AWS::StackName` in the names of the bridge's resources. */
const NAME_PREFIX_PARAMETER = 'BridgeNamePrefix';

/** Identity pool roles that may put records on the app event stream (Amplify's Kinesis provider). */
export interface IdentityPoolRoles {
  /** Roles of signed-in users: IdentityPoolAuthRoleNames. */
  readonly authenticated?: iam.IRole[];
  /** Guest roles: IdentityPoolGuestRoleNames. Anyone who knows the identity pool id can get guest credentials. */
  readonly unauthenticated?: iam.IRole[];
}

/** A value of a template parameter: a literal, or a list for a CommaDelimitedList. */
export type ParameterValue = string | number | string[];

export interface CognitoKinesisBridgeProps {
  /**
   * Where each function's code comes from. `prebuilt` (default): `<functionsDirectory>/<binary>.zip`, an arm64
   * `bootstrap` as the release writes it (target/release-artifacts/functions/); no Rust toolchain or Docker at
   * deploy time. `source`: cargo-lambda-cdk builds each binary from `manifestPath` (cargo-lambda and zig, or
   * Docker).
   * @default 'prebuilt'
   */
  readonly build?: 'prebuilt' | 'source';
  /** The directory of the prebuilt zips, one per function binary (`sync-processor.zip` ...). Required for `prebuilt`. */
  readonly functionsDirectory?: string;
  /** The workspace's Cargo.toml (or its directory), for `build: 'source'`. */
  readonly manifestPath?: string;
  /** An existing user pool: ExistingUserPoolId. Default: the bridge creates one, with the triggers attached. */
  readonly userPool?: cognito.IUserPool;
  /**
   * Attach the trigger forwarder to `userPool` (the template's own LambdaConfig: sign-up, confirmation,
   * authentication, pre token generation V2_0). Needs a pool defined in this app (its CfnUserPool).
   * @default true when userPool is given
   */
  readonly attachTriggers?: boolean;
  /** The identity pool roles your apps write app events with. */
  readonly identityPoolRoles?: IdentityPoolRoles;
  /** Your Cognito Streams stream: SourceStreamArn. Default: the bridge creates one. */
  readonly sourceStream?: kinesis.IStream;
  /** The stream your apps write analytics to: AppEventStreamArn. Default: the bridge creates one. */
  readonly appEventStream?: kinesis.IStream;
  /** Alarm notifications by email: AlarmEmail. Default: no topic (the alarms still exist). */
  readonly alarmEmail?: string;
  /**
   * Any other parameter of infra/template.yaml by name (BatchSize, EnableWarehouseDelivery, UserActivityLogs...).
   * A parameter set neither here nor by a prop stays a parameter of the stack, with the template's default.
   */
  readonly parameters?: Record<string, ParameterValue>;
  /**
   * What stands for the stack name in resource names (`<prefix>-sync-processor`, log groups, alarms, the user
   * pool). A nested stack's name (Amplify's) is too long for a function name (64 characters).
   * @default the stack's name, as with SAM
   */
  readonly namePrefix?: string;
  /** Another transformed template (tests). @default DEFAULT_TEMPLATE_FILE */
  readonly templateFile?: string;
}

/** The template parameter each typed prop sets. */
const PROP_PARAMETERS = {
  userPool: 'ExistingUserPoolId',
  authenticated: 'IdentityPoolAuthRoleNames',
  unauthenticated: 'IdentityPoolGuestRoleNames',
  sourceStream: 'SourceStreamArn',
  appEventStream: 'AppEventStreamArn',
  alarmEmail: 'AlarmEmail',
} as const;

export class CognitoKinesisBridge extends Construct {
  /** The included template: `include.getResource('SyncChangesStream')` and the like. */
  public readonly include: cfninc.CfnInclude;
  /** Each function by its binary's name (`sync-processor` ...). */
  public readonly functions: Record<string, lambda.CfnFunction>;
  /** The conditions of the template that the props decided (dropped from the stack), with their value. */
  public readonly decidedConditions: Record<string, boolean>;
  /** The trigger forwarder, to attach to a user pool. */
  public readonly triggerFunction: lambda.IFunction;
  /** The stream apps write analytics to (created or given). */
  public readonly appEventSourceStreamArn: string;
  /** The output streams: cognito-sync-change/v1, cognito-auth-event/v1, app-event/v1. */
  public readonly syncChangesStream: kinesis.IStream;
  public readonly authEventsStream: kinesis.IStream;
  public readonly appEventsStream: kinesis.IStream;

  constructor(scope: Construct, id: string, props: CognitoKinesisBridgeProps = {}) {
    super(scope, id);
    const stack = Stack.of(this);
    // The template's logical ids are kept (the names its alarms, dashboard and outputs use): one bridge per stack.
    if (stack.node.tryFindChild('CognitoKinesisBridge:one-per-stack')) {
      throw new Error(`${stack.stackName} already has a CognitoKinesisBridge: one per stack (its logical ids are the template's)`);
    }
    new Construct(stack, 'CognitoKinesisBridge:one-per-stack');

    const source: Json = JSON.parse(fs.readFileSync(props.templateFile ?? DEFAULT_TEMPLATE_FILE, 'utf8'));
    const values = this.parameterValues(props, source);
    if (props.namePrefix !== undefined) {
      values[NAME_PREFIX_PARAMETER] = props.namePrefix;
    }
    const { template, decided } = specialize(props.namePrefix === undefined ? source : withNamePrefix(source), values);
    this.decidedConditions = decided;

    // CfnInclude reads a file: the specialized template goes to a private temporary one.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cognito-kinesis-bridge-'));
    const file = path.join(dir, 'template.json');
    fs.writeFileSync(file, JSON.stringify(template));
    try {
      this.include = new cfninc.CfnInclude(this, 'Template', { templateFile: file, parameters: values });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }

    this.functions = this.swapCode(props, template);
    const trigger = this.include.getResource('AuthTriggerForwarderFunction') as lambda.CfnFunction;
    this.triggerFunction = lambda.Function.fromFunctionAttributes(this, 'TriggerFunction', {
      functionArn: trigger.attrArn,
      sameEnvironment: true,
    });
    this.appEventSourceStreamArn = this.include.getOutput('AppEventStreamArn').value;
    const stream = (logicalId: string) =>
      kinesis.Stream.fromStreamArn(this, logicalId, (this.include.getResource(logicalId) as kinesis.CfnStream).attrArn);
    this.syncChangesStream = stream('SyncChangesStream');
    this.authEventsStream = stream('AuthEventsStream');
    this.appEventsStream = stream('AppEventsStream');

    if (props.userPool && (props.attachTriggers ?? true)) {
      this.attachTriggers(props.userPool, source);
    }
  }

  /** The template's parameters the props set, checked against the template's declarations. */
  private parameterValues(props: CognitoKinesisBridgeProps, template: Json): Record<string, unknown> {
    const values: Record<string, unknown> = {};
    const set = (name: string, v: unknown, by: string) => {
      if (!(name in template.Parameters)) {
        throw new Error(`${by}: the template has no parameter ${name}`);
      }
      if (name in values) {
        throw new Error(`${by}: parameter ${name} is set twice (by a prop and by parameters)`);
      }
      checkParameter(name, template.Parameters[name], v);
      values[name] = v;
    };
    // Which resources the bridge creates and which the app gives is decided here, not at deploy time: every
    // attribute the construct exposes is then a plain reference, usable from another stack (Amplify's).
    set(PROP_PARAMETERS.userPool, props.userPool?.userPoolId ?? '', 'userPool');
    set(PROP_PARAMETERS.sourceStream, props.sourceStream?.streamArn ?? '', 'sourceStream');
    set(PROP_PARAMETERS.appEventStream, props.appEventStream?.streamArn ?? '', 'appEventStream');
    const roles = props.identityPoolRoles;
    if (roles?.authenticated?.length) {
      set(PROP_PARAMETERS.authenticated, roles.authenticated.map((r) => r.roleName), 'identityPoolRoles.authenticated');
    }
    if (roles?.unauthenticated?.length) {
      set(PROP_PARAMETERS.unauthenticated, roles.unauthenticated.map((r) => r.roleName), 'identityPoolRoles.unauthenticated');
    }
    if (props.alarmEmail !== undefined) set(PROP_PARAMETERS.alarmEmail, props.alarmEmail, 'alarmEmail');
    for (const [name, v] of Object.entries(props.parameters ?? {})) {
      set(name, v, 'parameters');
    }
    return values;
  }

  /** Each function's code: its binary's zip, or cargo-lambda-cdk's build of it. */
  private swapCode(props: CognitoKinesisBridgeProps, template: Json): Record<string, lambda.CfnFunction> {
    const build = props.build ?? 'prebuilt';
    const functions: Record<string, lambda.CfnFunction> = {};
    const missing: string[] = [];
    for (const [logicalId, r] of Object.entries<Json>(template.Resources)) {
      if (r.Type !== 'AWS::Lambda::Function') {
        continue;
      }
      const binary: string | undefined = r.Metadata?.BuildProperties?.Binary;
      if (!binary) {
        throw new Error(`${logicalId}: no Metadata.BuildProperties.Binary, so no code to give it`);
      }
      if (JSON.stringify(r.Properties.Architectures) !== '["arm64"]') {
        throw new Error(`${logicalId}: the functions are built for arm64, the template says ${JSON.stringify(r.Properties.Architectures)}`);
      }
      const fn = this.include.getResource(logicalId) as lambda.CfnFunction;
      let code: lambda.Code;
      if (build === 'prebuilt') {
        if (!props.functionsDirectory) {
          throw new Error("build 'prebuilt' needs functionsDirectory (target/release-artifacts/functions of a release)");
        }
        const zip = path.resolve(props.functionsDirectory, `${binary}.zip`);
        if (!fs.existsSync(zip)) {
          missing.push(zip);
          continue;
        }
        code = lambda.Code.fromAsset(zip);
      } else {
        if (!props.manifestPath) {
          throw new Error("build 'source' needs manifestPath (the workspace's Cargo.toml)");
        }
        // Loaded only here: a prebuilt deployment never needs cargo-lambda-cdk's toolchain checks.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { Bundling } = require('cargo-lambda-cdk/lib/bundling');
        code = Bundling.bundle({
          manifestPath: props.manifestPath,
          binaryName: binary,
          architecture: lambda.Architecture.ARM_64,
        });
      }
      const s3 = code.bind(fn).s3Location!;
      fn.code = { s3Bucket: s3.bucketName, s3Key: s3.objectKey, s3ObjectVersion: s3.objectVersion };
      code.bindToResource(fn);
      functions[binary] = fn;
    }
    if (missing.length > 0) {
      throw new Error(`no prebuilt zip for ${missing.length} function(s) of the template: ${missing.join(', ')}`);
    }
    return functions;
  }

  /** The template's own triggers (its UserPool's LambdaConfig) on a pool defined in this app. */
  private attachTriggers(userPool: cognito.IUserPool, template: Json): void {
    const cfnPool = userPool.node.defaultChild;
    if (!(cfnPool instanceof cognito.CfnUserPool)) {
      throw new Error('attachTriggers needs a pool defined in this app; attach them to an imported pool with infra/attach-triggers.sh (or attachTriggers: false)');
    }
    const pools = Object.values<Json>(template.Resources).filter((r) => r.Type === 'AWS::Cognito::UserPool');
    if (pools.length !== 1) {
      throw new Error(`the template has ${pools.length} user pools, expected one`);
    }
    const arnOf = (v: Json): Json => {
      if (v && typeof v === 'object' && Array.isArray(v['Fn::GetAtt']) && v['Fn::GetAtt'][1] === 'Arn') {
        return (this.include.getResource(v['Fn::GetAtt'][0]) as lambda.CfnFunction).attrArn;
      }
      if (v && typeof v === 'object') {
        return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, arnOf(x)]));
      }
      return v;
    };
    // Overrides of the pool's LambdaConfig, key by key: a trigger the app set on another key stays.
    for (const [key, v] of Object.entries<Json>(pools[0].Properties.LambdaConfig)) {
      cfnPool.addPropertyOverride(`LambdaConfig.${key}`, arnOf(v));
    }
  }
}

/**
 * Every `${AWS::StackName}` in a resource's name (a property called `Name` or `...Name`: FunctionName,
 * LogGroupName, UserPoolName...) becomes the name prefix parameter. Elsewhere the stack's name stays: the alarm
 * key's grant names the alarms that CloudFormation names after the stack (`alarm:${AWS::StackName}-*`).
 */
function withNamePrefix(template: Json): Json {
  const out = JSON.parse(JSON.stringify(template));
  const rename = (v: Json): Json =>
    JSON.parse(JSON.stringify(v).replace(/\$\{AWS::StackName\}/g, `\${${NAME_PREFIX_PARAMETER}}`)
      .replace(/\{"Ref":"AWS::StackName"\}/g, `{"Ref":"${NAME_PREFIX_PARAMETER}"}`));
  for (const r of Object.values<Json>(out.Resources)) {
    for (const key of Object.keys(r.Properties ?? {})) {
      if (key === 'Name' || key.endsWith('Name')) {
        r.Properties[key] = rename(r.Properties[key]);
      }
    }
  }
  out.Parameters[NAME_PREFIX_PARAMETER] = { Type: 'String', Description: 'The prefix of resource names.' };
  return out;
}

/** A literal value against its parameter's declared constraints (what CloudFormation would refuse at deploy). */
function checkParameter(name: string, decl: Json, v: unknown): void {
  if (Token.isUnresolved(v as string) || (Array.isArray(v) && v.some((x) => Token.isUnresolved(x)))) {
    return;
  }
  const list = decl.Type === 'CommaDelimitedList';
  if (Array.isArray(v) !== list) {
    throw new Error(`parameter ${name} (${decl.Type}): ${list ? 'a list' : 'a string or number'} expected, got ${JSON.stringify(v)}`);
  }
  if (list) {
    return;
  }
  const text = String(v);
  if (decl.AllowedValues && !decl.AllowedValues.map(String).includes(text)) {
    throw new Error(`parameter ${name}: ${text} is not one of ${decl.AllowedValues.join(', ')}`);
  }
  if (decl.AllowedPattern && !new RegExp(decl.AllowedPattern).test(text)) {
    throw new Error(`parameter ${name}: ${text} does not match ${decl.AllowedPattern}`);
  }
  if (decl.Type === 'Number') {
    const n = Number(text);
    if (Number.isNaN(n) || (decl.MinValue !== undefined && n < decl.MinValue) || (decl.MaxValue !== undefined && n > decl.MaxValue)) {
      throw new Error(`parameter ${name}: ${text} is not a number in [${decl.MinValue ?? ''}, ${decl.MaxValue ?? ''}]`);
    }
  }
}
