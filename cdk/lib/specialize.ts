/**
 * Specializes the bridge's CloudFormation template (infra/template.yaml after the SAM transform) for the
 * parameters a CDK app sets: every condition that those values decide is evaluated here, its resources kept or
 * dropped and its `Fn::If`s resolved, and every rule they decide is checked here (a failing assertion is a synth
 * error, where SAM would fail at deploy time).
 *
 * Why: a CloudFormation condition may only read parameters, never a resource. A prop such as `userPool` is a
 * reference to a resource of the app (`{Ref: UserPool...}`), so a condition like
 * `CreateUserPool: !Equals [!Ref ExistingUserPoolId, ""]` cannot keep reading it; and a condition over a literal
 * (`!Equals ["ops@example.com", ""]`) is one that cfn-lint flags as always false. A deploy-time value (a token) is
 * taken to be non-empty: every reference the props give (a pool id, a role name, a stream ARN) is.
 */
import { Token } from 'aws-cdk-lib';

/** A JSON value of the template. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

/** What is known of a value at synth time. */
type Known = { readonly literal: string } | { readonly nonEmpty: true };

/** A condition expression reduced as far as the set parameters allow. */
type Reduced = boolean | { readonly expr: Json };

/** The result: the specialized template and the conditions it decided. */
export interface Specialized {
  readonly template: Json;
  readonly decided: Record<string, boolean>;
}

function isToken(v: unknown): boolean {
  return (typeof v === 'string' && Token.isUnresolved(v)) || (Array.isArray(v) && Token.isUnresolved(v));
}

function known(v: unknown): Known {
  if (isToken(v)) {
    return { nonEmpty: true };
  }
  if (Array.isArray(v)) {
    throw new Error('a list parameter is read through Fn::Join only');
  }
  return { literal: String(v) };
}

export function specialize(source: Json, values: Record<string, unknown>): Specialized {
  const template: Json = JSON.parse(JSON.stringify(source));
  const conditions: Record<string, Json> = template.Conditions ?? {};
  const memo = new Map<string, Reduced>();

  /** A value: known when it reads only set parameters (or none), else undefined. */
  function value(x: Json): Known | undefined {
    if (typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean') {
      return { literal: String(x) };
    }
    if (x && typeof x === 'object' && 'Ref' in x) {
      return x.Ref in values && !Array.isArray(values[x.Ref]) ? known(values[x.Ref]) : undefined;
    }
    if (x && typeof x === 'object' && 'Fn::Join' in x) {
      const [sep, list] = x['Fn::Join'];
      let items: Known[] | undefined;
      if (Array.isArray(list)) {
        const parts = list.map(value);
        items = parts.every((p) => p !== undefined) ? (parts as Known[]) : undefined;
      } else if (list && typeof list === 'object' && 'Ref' in list && list.Ref in values) {
        const v = values[list.Ref];
        items = isToken(v) ? [{ nonEmpty: true }] : (v as unknown[]).map(known);
      }
      if (items === undefined) {
        return undefined;
      }
      if (items.some((i) => 'nonEmpty' in i)) {
        return { nonEmpty: true };
      }
      return { literal: items.map((i) => (i as { literal: string }).literal).join(sep) };
    }
    return undefined;
  }

  function reduce(x: Json): Reduced {
    if ('Condition' in x) {
      const r = named(x.Condition);
      return typeof r === 'boolean' ? r : { expr: x };
    }
    if ('Fn::Not' in x) {
      const r = reduce(x['Fn::Not'][0]);
      return typeof r === 'boolean' ? !r : { expr: { 'Fn::Not': [r.expr] } };
    }
    for (const [op, unit] of [['Fn::And', true], ['Fn::Or', false]] as const) {
      if (op in x) {
        const rest: Json[] = [];
        for (const part of x[op]) {
          const r = reduce(part);
          if (r === !unit) {
            return !unit;
          }
          if (typeof r !== 'boolean') {
            rest.push(r.expr);
          }
        }
        if (rest.length === 0) {
          return unit;
        }
        return { expr: rest.length === 1 ? rest[0] : { [op]: rest } };
      }
    }
    if ('Fn::Equals' in x) {
      const [a, b] = x['Fn::Equals'].map(value);
      if (a && b && 'literal' in a && 'literal' in b) {
        return a.literal === b.literal;
      }
      if (a && b && (('nonEmpty' in a && 'literal' in b && b.literal === '') || ('nonEmpty' in b && 'literal' in a && a.literal === ''))) {
        return false;
      }
      return { expr: x };
    }
    return { expr: x };
  }

  function named(name: string): Reduced {
    if (!memo.has(name)) {
      if (!(name in conditions)) {
        throw new Error(`condition ${name} is not in the template`);
      }
      const r = reduce(conditions[name]);
      // A residual condition naming another keeps its name: `{Condition: X}` stays a reference.
      memo.set(name, typeof r === 'boolean' ? r : { expr: r.expr });
    }
    return memo.get(name)!;
  }

  const decided: Record<string, boolean> = {};
  for (const name of Object.keys(conditions)) {
    const r = named(name);
    if (typeof r === 'boolean') {
      decided[name] = r;
      delete conditions[name];
    } else {
      conditions[name] = r.expr;
    }
  }

  /** `Fn::If`s over decided conditions resolved, everywhere below x. */
  function resolveIfs(x: Json): Json {
    if (Array.isArray(x)) {
      return x.map(resolveIfs);
    }
    if (x && typeof x === 'object') {
      if ('Fn::If' in x && x['Fn::If'][0] in decided) {
        const [c, yes, no] = x['Fn::If'];
        return resolveIfs(decided[c] ? yes : no);
      }
      const out: Json = {};
      for (const [k, v] of Object.entries(x)) {
        out[k] = resolveIfs(v);
      }
      return out;
    }
    return x;
  }

  for (const section of ['Resources', 'Outputs']) {
    const entries: Record<string, Json> = template[section] ?? {};
    for (const [id, r] of Object.entries(entries)) {
      if (r.Condition in decided) {
        if (!decided[r.Condition]) {
          delete entries[id];
          continue;
        }
        delete r.Condition;
      }
      entries[id] = resolveIfs(r);
    }
  }

  for (const [name, rule] of Object.entries<Json>(template.Rules ?? {})) {
    const applies = rule.RuleCondition === undefined ? true : reduce(rule.RuleCondition);
    if (applies === false) {
      delete template.Rules[name];
      continue;
    }
    const open = rule.Assertions.filter((a: Json) => {
      const r = reduce(a.Assert);
      if (r === false && applies === true) {
        throw new Error(`rule ${name}: ${a.AssertDescription}`);
      }
      return r !== true;
    });
    if (open.length === 0) {
      delete template.Rules[name];
    } else {
      rule.Assertions = open;
    }
  }
  if (template.Rules && Object.keys(template.Rules).length === 0) {
    delete template.Rules;
  }

  inlineLiterals(template, values);
  checkReferences(template);
  return { template, decided };
}

/**
 * Literal parameter values written into the `Fn::Sub` strings that name them, and a `Fn::Sub` left without a
 * variable made a plain string (cfn-lint W1020). CfnInclude replaces the rest (`Ref`s, tokens).
 */
function inlineLiterals(template: Json, values: Record<string, unknown>): void {
  const literal = (name: string): string | undefined => {
    const v = values[name];
    return (typeof v === 'string' || typeof v === 'number') && !isToken(v) ? String(v) : undefined;
  };
  const walk = (x: Json): Json => {
    if (Array.isArray(x)) {
      return x.map(walk);
    }
    if (!x || typeof x !== 'object') {
      return x;
    }
    if ('Fn::Sub' in x && typeof x['Fn::Sub'] === 'string') {
      const text = x['Fn::Sub'].replace(/\$\{([^}!][^}]*)\}/g, (m: string, name: string) => literal(name) ?? m);
      return /\$\{[^!]/.test(text) ? { 'Fn::Sub': text } : text.replace(/\$\{!/g, '${');
    }
    const out: Json = {};
    for (const [k, v] of Object.entries(x)) {
      out[k] = walk(v);
    }
    return out;
  };
  for (const section of ['Resources', 'Outputs']) {
    if (template[section]) {
      template[section] = walk(template[section]);
    }
  }
}

/** Every Ref, GetAtt, Sub variable and DependsOn names something the template still has. */
function checkReferences(template: Json): void {
  const names = new Set<string>([
    ...Object.keys(template.Resources ?? {}),
    ...Object.keys(template.Parameters ?? {}),
  ]);
  const missing = new Set<string>();
  const see = (name: string) => {
    if (!name.startsWith('AWS::') && !names.has(name.split('.')[0])) {
      missing.add(name);
    }
  };
  const walk = (x: Json, subVars: Set<string>) => {
    if (Array.isArray(x)) {
      x.forEach((v) => walk(v, subVars));
      return;
    }
    if (!x || typeof x !== 'object') {
      return;
    }
    if (typeof x.Ref === 'string') {
      see(x.Ref);
    }
    if (Array.isArray(x['Fn::GetAtt'])) {
      see(x['Fn::GetAtt'][0]);
    }
    if ('Fn::Sub' in x) {
      const [text, vars] = typeof x['Fn::Sub'] === 'string' ? [x['Fn::Sub'], {}] : x['Fn::Sub'];
      for (const m of String(text).matchAll(/\$\{([^}!][^}]*)\}/g)) {
        if (!(m[1] in vars)) {
          see(m[1]);
        }
      }
      walk(vars, subVars);
      return;
    }
    for (const v of Object.values(x)) {
      walk(v, subVars);
    }
  };
  for (const r of Object.values<Json>(template.Resources ?? {})) {
    walk(r.Properties ?? {}, new Set());
    for (const d of [r.DependsOn ?? []].flat()) {
      see(d);
    }
  }
  walk(template.Outputs ?? {}, new Set());
  if (missing.size > 0) {
    throw new Error(`the specialized template still refers to what it dropped: ${[...missing].join(', ')}`);
  }
}
