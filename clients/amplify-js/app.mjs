// An app built on the published `aws-amplify` package (version pinned in package.json), run in Node with a
// jsdom window, writing to Kinesis streams on a local moto server. Driven by tests/amplify_js.rs; see the
// comment at the top of that file for what it observed.
//
// What it does, as an app would:
//   Amplify.configure: Auth (a user pool and an identity pool on moto, through userPoolEndpoint /
//   identityPoolEndpoint), Analytics.Kinesis (flush every 100 ms) and Analytics.Pinpoint (for scenario b only);
//   signIn with USER_PASSWORD_AUTH (moto answers the default SRP flow with UserNotFoundException); then
//   a. "our-shape":       Kinesis record() with data in this project's input shape (crates/app-events/src/input.rs);
//   b. "pinpoint-shape":  Amplify's own Pinpoint provider records an event; its PutEvents body (built by
//                         @aws-amplify/core's PinpointEventBuffer) is captured in-process (Pinpoint ended on
//                         2026-10-30 and moto has no PutEvents), then handed to Kinesis record() twice: the event
//                         object alone (`Events[<eventId>]`) and the whole body (`{BatchItem: ...}`);
//   c. "auto-track":      Kinesis configureAutoTrack: session (start on configure, stop on visibility hidden),
//                         pageView (an SPA navigation by history.pushState) and event (a click on a tagged button);
//   d. "faults":          on a second stream, through fault injection in the front: one entry failed inside an
//                         HTTP 200 PutRecords answer, and one request answered HTTP 500 three times;
//   e. "resend":          on a third stream, a-c again (the very records of a and b, auto-tracking anew), where
//                         the front lets moto store each new record and then fails the call (HTTP 500 and a
//                         dropped answer, in turn): the client sends the stored records again.
// Each scenario waits (bounded) until the front has delivered its records to moto before the next starts, so
// that each scenario's records travel in their own PutRecords requests.
//
// Input (environment): AWS_ENDPOINT_URL (moto, loopback), AWS_REGION, APP_STREAM, APP_FAULT_STREAM, APP_RESEND_STREAM,
// USER_POOL_ID, USER_POOL_CLIENT_ID, IDENTITY_POOL_ID, APP_USERNAME, APP_PASSWORD.
// Output: one JSON summary on stdout; logs on stderr. Exit status 1 on any error, and on any warning Amplify logs
// beyond the expected ones (EXPECTED_WARNINGS).

import { randomUUID } from 'node:crypto';
import { JSDOM } from 'jsdom';
import { startFront } from './h2-front.mjs';

const PAGE = 'https://app.example.com/';
const FLUSH_INTERVAL_MS = 100;
const WAIT_MS = 30_000;
// How long scenario d watches for a resend of the entry that failed inside a 200 answer (30 flush intervals).
const RESEND_WATCH_MS = 30 * FLUSH_INTERVAL_MS;

function env(name) {
	const value = process.env[name];
	if (!value) throw new Error(`environment variable ${name} is not set`);
	return value;
}

// Amplify reports failures of record() and flushEvents() only through its console logger: any warning or error
// fails the run, except these expected ones (kept in the summary).
const EXPECTED_WARNINGS = [
	// Amplify, once per custom endpoint: the Cognito endpoints point at moto.
	/Auth - You are using a custom Amazon Amazon Cognito (User|Identity) Pool endpoint/,
	// The AWS SDK (@aws-sdk/client-kinesis) announcing the end of Node 20 support (a process warning).
	/NodeVersionSupportWarning/,
];
const problems = [];
const expectedWarnings = [];
for (const level of ['warn', 'error']) {
	const original = console[level].bind(console);
	console[level] = (...args) => {
		const text = args.map(a => (a instanceof Error ? a.stack : typeof a === 'string' ? a : JSON.stringify(a))).join(' ');
		(EXPECTED_WARNINGS.some(re => re.test(text)) ? expectedWarnings : problems).push(text);
		original(...args);
	};
}
// stdout carries only the summary.
console.log = console.info = console.debug = (...args) => process.stderr.write(`${args.join(' ')}\n`);

async function waitFor(what, predicate, timeoutMs = WAIT_MS) {
	const deadline = Date.now() + timeoutMs;
	while (!predicate()) {
		if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
		await new Promise(r => setTimeout(r, 20));
	}
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

async function main() {
	const moto = env('AWS_ENDPOINT_URL');
	const region = env('AWS_REGION');
	const stream = env('APP_STREAM');
	const faultStream = env('APP_FAULT_STREAM');
	const resendStream = env('APP_RESEND_STREAM');

	// A browser window, installed before Amplify is imported: @aws-amplify/core creates its session listener at
	// import time and only listens for visibility changes when `window.document` exists then.
	const dom = new JSDOM('<!doctype html><html><body><button id="add-to-cart" data-amplify-analytics-on="click" data-amplify-analytics-name="add_to_cart" data-amplify-analytics-attrs="sku:B-42, list:featured">Add</button></body></html>', { url: PAGE, pretendToBeVisual: true });
	const { window } = dom;
	let visibility = 'visible';
	Object.defineProperty(window.document, 'visibilityState', { configurable: true, get: () => visibility });
	Object.defineProperty(window.document, 'hidden', { configurable: true, get: () => visibility === 'hidden' });
	for (const name of ['window', 'document', 'sessionStorage', 'localStorage', 'HTMLElement', 'Event', 'MouseEvent', 'location', 'history']) {
		Object.defineProperty(globalThis, name, { configurable: true, writable: true, value: name === 'window' ? window : window[name] });
	}

	const front = await startFront({
		upstream: moto,
		failEntryOnce: ['fault-entry-rejected'],
		fail500: { 'fault-call-rejected': 3 },
		storeThenFail: { stream: resendStream, answers: ['http 500', 'drop'] },
	});
	// Read by the Kinesis client's endpoint resolution (the SDK's AWS_ENDPOINT_URL_<SERVICE> setting).
	process.env.AWS_ENDPOINT_URL_KINESIS = front.origin;

	// Pinpoint's two calls are answered here, in-process, after their bodies are captured.
	const pinpointHost = `pinpoint.${region}.amazonaws.com`;
	const pinpointCalls = [];
	const realFetch = globalThis.fetch;
	globalThis.fetch = async (input, init = {}) => {
		const url = new URL(input instanceof Request ? input.url : String(input));
		if (url.hostname !== pinpointHost) return realFetch(input, init);
		const body = init.body === undefined ? null : JSON.parse(String(init.body));
		pinpointCalls.push({ method: init.method, path: url.pathname, body });
		let answer = { Message: 'Accepted', RequestID: randomUUID() };
		if (url.pathname.endsWith('/events')) {
			answer = { Results: {} };
			for (const [endpointId, item] of Object.entries(body.BatchItem)) {
				answer.Results[endpointId] = {
					EndpointItemResponse: { Message: 'Accepted', StatusCode: 202 },
					EventsItemResponse: Object.fromEntries(Object.keys(item.Events).map(id => [id, { Message: 'Accepted', StatusCode: 202 }])),
				};
			}
		}
		return new Response(JSON.stringify(answer), { status: 202, headers: { 'content-type': 'application/json' } });
	};

	const { Amplify } = await import('aws-amplify');
	const { signIn, getCurrentUser, fetchAuthSession } = await import('aws-amplify/auth');
	const kinesis = await import('aws-amplify/analytics/kinesis');
	const pinpoint = await import('aws-amplify/analytics/pinpoint');

	Amplify.configure({
		Auth: {
			Cognito: {
				userPoolId: env('USER_POOL_ID'),
				userPoolClientId: env('USER_POOL_CLIENT_ID'),
				identityPoolId: env('IDENTITY_POOL_ID'),
				allowGuestAccess: true,
				userPoolEndpoint: moto,
				identityPoolEndpoint: moto,
			},
		},
		Analytics: {
			Kinesis: { region, flushInterval: FLUSH_INTERVAL_MS },
			Pinpoint: { appId: 'documentation-app-id-0123456789ab', region, flushInterval: FLUSH_INTERVAL_MS },
		},
	});

	const signedIn = await signIn({
		username: env('APP_USERNAME'),
		password: env('APP_PASSWORD'),
		options: { authFlowType: 'USER_PASSWORD_AUTH' },
	});
	if (!signedIn.isSignedIn) throw new Error(`sign-in did not complete: ${JSON.stringify(signedIn.nextStep)}`);
	const { userId } = await getCurrentUser();
	const session = await fetchAuthSession();
	const identityId = session.identityId;
	if (!identityId || !session.credentials) throw new Error('no identity id or credentials from the identity pool');

	const scenarios = [];
	const recorded = (name, streamName, records) => scenarios.push({ scenario: name, stream: streamName, records });
	const deliveredOn = s => front.delivered.filter(d => d.stream === s).length;
	let expectedOnStream = 0;
	const record = (scenario, partitionKey, data) => {
		kinesis.record({ streamName: stream, partitionKey, data });
		scenario.push({ partition_key: partitionKey, json: JSON.stringify(data) });
	};
	// What a and b recorded, recorded again by e.
	const recordedData = [];

	// a. Our input shape.
	{
		const records = [];
		// The session started 90 s ago, the level was completed 1.5 s ago, the event is sent now: three distinct
		// times, so that the test can tell them apart when it replaces them with documentation values.
		const now = Date.now();
		const data = {
			event_type: 'level_complete',
			event_id: randomUUID(),
			timestamp: new Date(now - 1_500).toISOString(),
			sent_at: new Date(now).toISOString(),
			session: { id: randomUUID(), start: new Date(now - 90_000).toISOString() },
			user_id: userId,
			anonymous_id: identityId,
			context: { platform: 'Web', app_version: '2.4.1', locale: 'en_US', device_id: 'install-0001', os: 'Linux', model: 'desktop' },
			properties: { level: 'forest-3', difficulty: 'hard' },
			metrics: { score: 1250, seconds: 93.5 },
		};
		record(records, identityId, data);
		recordedData.push([data]);
		expectedOnStream += records.length;
		await waitFor('scenario a on the stream', () => deliveredOn(stream) >= expectedOnStream);
		recorded('our-shape', stream, records.map(r => ({ ...r, event: JSON.parse(r.json).event_type })));
	}

	// b. What Amplify's Pinpoint provider sends to PutEvents, handed to Kinesis.
	{
		pinpoint.record({
			name: 'level_complete',
			attributes: { level: 'forest-3', difficulty: 'hard' },
			metrics: { score: 1250, seconds: 93.5 },
		});
		await waitFor('the Pinpoint provider\'s PutEvents', () => pinpointCalls.some(c => c.path.endsWith('/events')));
		const putEvents = pinpointCalls.find(c => c.path.endsWith('/events')).body;
		const [endpointItem] = Object.values(putEvents.BatchItem);
		const [event] = Object.values(endpointItem.Events);
		const records = [];
		record(records, identityId, event);
		record(records, identityId, putEvents);
		recordedData.push([event, putEvents]);
		expectedOnStream += records.length;
		await waitFor('scenario b on the stream', () => deliveredOn(stream) >= expectedOnStream);
		recorded('pinpoint-shape', stream, [
			{ ...records[0], event: event.EventType, shape: 'PutEvents event (EventsRequest.BatchItem[endpointId].Events[eventId])' },
			{ ...records[1], event: event.EventType, shape: 'PutEvents body (EventsRequest)' },
		]);
	}

	// Auto-tracking through the Kinesis provider to `streamName` while the page is visible: the session starts
	// (on configure), an SPA navigation to /products/42, a click on the tagged button, the page hidden (the
	// session stops); after each, waits until `onStream(n)` says the n-th of them is on the stream.
	const autoTrack = async (streamName, onStream) => {
		const options = { streamName, partitionKey: identityId };
		kinesis.configureAutoTrack({ enable: true, type: 'session', options });
		kinesis.configureAutoTrack({ enable: true, type: 'pageView', options });
		kinesis.configureAutoTrack({ enable: true, type: 'event', options });
		await waitFor('the session start on the stream', () => onStream(1));
		window.history.pushState({}, '', '/products/42');
		await waitFor('the page view on the stream', () => onStream(2));
		window.document.getElementById('add-to-cart').dispatchEvent(new window.MouseEvent('click', { bubbles: true }));
		await waitFor('the click on the stream', () => onStream(3));
		visibility = 'hidden';
		window.document.dispatchEvent(new window.Event('visibilitychange'));
		await waitFor('the session stop on the stream', () => onStream(4));
		for (const type of ['session', 'pageView', 'event']) kinesis.configureAutoTrack({ enable: false, type });
	};

	// c. Auto-tracking through the Kinesis provider.
	{
		await autoTrack(stream, n => deliveredOn(stream) >= expectedOnStream + n);
		const records = front.delivered.filter(d => d.stream === stream).slice(expectedOnStream).map(d => {
			const json = Buffer.from(d.data, 'base64').toString('utf8');
			return { partition_key: d.partitionKey, json, event: JSON.parse(json).name };
		});
		expectedOnStream += records.length;
		recorded('auto-track', stream, records);
	}

	// e. A resend of records that were stored: a-c again on a stream of their own, where the front lets moto
	// store every record it has not seen there, then fails that call (HTTP 500 and a dropped answer in turn).
	// Each step waits until its records are on the stream twice (stored, then stored again by the resend).
	{
		const twice = n => deliveredOn(resendStream) >= 2 * n;
		let resendOnStream = 0;
		for (const data of recordedData) {
			for (const d of data) kinesis.record({ streamName: resendStream, partitionKey: identityId, data: d });
			resendOnStream += data.length;
			await waitFor('a resent step on the stream twice', () => twice(resendOnStream));
		}
		// The page shows again (no tracker is on: nothing is recorded), then auto-tracking anew.
		visibility = 'visible';
		window.document.dispatchEvent(new window.Event('visibilitychange'));
		await autoTrack(resendStream, n => twice(resendOnStream + n));
		const records = front.delivered.filter(d => d.stream === resendStream).map(d => {
			const json = Buffer.from(d.data, 'base64').toString('utf8');
			const parsed = JSON.parse(json);
			return { partition_key: d.partitionKey, json, event: parsed.event_type ?? parsed.name ?? parsed.EventType ?? 'PutEvents body', answered: d.answered };
		});
		recorded('resend', resendStream, records);
	}

	// d. Faults moto cannot produce, on a stream of their own.
	{
		const records = [];
		const faultRecord = (partitionKey, data) => {
			kinesis.record({ streamName: faultStream, partitionKey, data });
			records.push({ partition_key: partitionKey, json: JSON.stringify(data), event: data.event_type });
		};
		const seen = key => front.log.filter(r => r.partition_keys?.includes(key)).length;
		faultRecord('fault-entry-rejected', { event_type: 'fault_entry_rejected', event_id: randomUUID(), timestamp: new Date().toISOString() });
		await waitFor('the request with the entry to reject', () => seen('fault-entry-rejected') >= 1);
		kinesis.flushEvents();
		// A resend would come within a flush interval or two; watch for thirty.
		await sleep(RESEND_WATCH_MS);
		faultRecord('fault-call-rejected', { event_type: 'fault_call_rejected', event_id: randomUUID(), timestamp: new Date().toISOString() });
		await waitFor('the record of the rejected call on its stream', () => deliveredOn(faultStream) >= 1);
		recorded('faults', faultStream, records);
	}

	// What an app does before it goes away; the buffer is empty by now.
	kinesis.flushEvents();
	await sleep(2 * FLUSH_INTERVAL_MS);

	const summary = {
		amplify: { identity_id: identityId, user_sub: userId },
		front: front.origin,
		scenarios,
		kinesis_requests: front.log,
		pinpoint_requests: pinpointCalls,
		expected_warnings: expectedWarnings,
		problems,
	};
	process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
	if (problems.length > 0) throw new Error(`Amplify logged ${problems.length} warning(s) or error(s)`);
}

try {
	await main();
	// Amplify's Kinesis EventBuffer starts a setInterval it never keeps a handle to (its release() cannot clear
	// it), so the process would never exit on its own.
	process.exit(0);
} catch (e) {
	process.stderr.write(`amplify-js app failed: ${e?.stack ?? e}\n`);
	process.exit(1);
}
