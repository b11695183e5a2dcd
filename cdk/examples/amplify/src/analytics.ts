/**
 * The front end of the Amplify Gen 2 recipe: Amplify JS's Kinesis provider writing app analytics to the bridge's
 * app event stream, with auto-tracking (sessions, page views, tagged DOM events) and one custom event in this
 * project's input shape (README, "The input contract (ours)"). What tests/amplify_js.rs runs against moto with the
 * same aws-amplify version (clients/amplify-js/app.mjs); type-checked by `make test`.
 */
import { Amplify } from 'aws-amplify';
import { fetchAuthSession } from 'aws-amplify/auth';
import { configureAutoTrack, record } from 'aws-amplify/analytics/kinesis';
// Written by `npx ampx sandbox` / the Amplify build (amplify/backend.ts adds `custom.appEvents`).
import outputs from '../amplify_outputs.json';

const { streamName, region } = outputs.custom.appEvents;

Amplify.configure(outputs);
Amplify.configure({
  ...Amplify.getConfig(),
  Analytics: { Kinesis: { region, flushInterval: 5_000, bufferSize: 1_000, resendLimit: 5 } },
});

/** An id stable for this install, signed in or out: the forwarder partitions by it (anonymous_id). */
function installId(): string {
  let id = localStorage.getItem('install-id');
  if (!id) {
    id = crypto.randomUUID();
    localStorage.setItem('install-id', id);
  }
  return id;
}

/** Auto-tracking once signed in (the identity pool's signed-in role may write; see amplify/backend.ts). */
export async function startAnalytics(): Promise<void> {
  const { identityId } = await fetchAuthSession();
  const options = { streamName, partitionKey: identityId ?? installId() };
  configureAutoTrack({ enable: true, type: 'session', options });
  configureAutoTrack({ enable: true, type: 'pageView', options });
  // <button data-amplify-analytics-on="click" data-amplify-analytics-name="add_to_cart">
  configureAutoTrack({ enable: true, type: 'event', options });
}

/** One event of your own, in the bridge's input shape (unknown fields are refused). */
export function track(eventType: string, properties: Record<string, string>, userId?: string): void {
  record({
    streamName,
    partitionKey: installId(),
    data: {
      event_type: eventType,
      event_id: crypto.randomUUID(), // the same on every resend of this event
      timestamp: new Date().toISOString(),
      user_id: userId,
      anonymous_id: installId(),
      context: { platform: 'Web', app_version: '1.0.0', locale: navigator.language },
      properties,
    },
  });
}
