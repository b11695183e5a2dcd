// A loopback HTTP/2 front for moto. The Kinesis client that Amplify builds uses the SDK's NodeHttp2Handler;
// with an http:// endpoint it speaks HTTP/2 cleartext with prior knowledge (h2c), which moto (HTTP/1.1 only)
// cannot answer. This front listens on 127.0.0.1 with h2c, forwards every request to moto over HTTP/1.1 and
// relays the answer, logging each Kinesis call. It can also inject the two faults moto never produces:
// - `failEntryOnce`: partition keys whose PutRecords entry is answered as failed (throttled) the first time it
//   is seen, inside an HTTP 200 answer; that entry is not forwarded to moto;
// - `fail500`: partition key -> how many requests containing it are answered HTTP 500 (not forwarded);
// - `storeThenFail`: `{ stream, answers }`: on that stream, a PutRecords request that carries a record (partition
//   key and data) the front has not seen there before is forwarded to moto, which stores its records, and then
//   answered with the next of `answers`, round and round: `'http 500'` (an InternalFailure) or `'drop'` (the
//   HTTP/2 stream reset: no answer at all). The client sees a failed call whose records were in fact stored, as
//   after a lost answer, and sends them again; a request whose records were all seen there before passes.
// Nothing here leaves the loopback interface.

import http from 'node:http';
import http2 from 'node:http2';

const PUT_RECORDS = 'Kinesis_20131202.PutRecords';

/**
 * Starts the front. `upstream` is moto's origin (`http://127.0.0.1:<port>`).
 * Returns `{ origin, log, delivered, close }`: `log` has one entry per request received, `delivered` one per
 * PutRecords entry that moto accepted (`{ stream, partitionKey, data, answered }`, data base64; `answered`:
 * false when the front then failed the call, see `storeThenFail`).
 */
export async function startFront({ upstream, failEntryOnce = [], fail500 = {}, storeThenFail = null }) {
	const target = new URL(upstream);
	if (!['127.0.0.1', 'localhost', '[::1]'].includes(target.hostname)) {
		throw new Error(`the front only forwards to loopback, not ${upstream}`);
	}
	const toFailOnce = new Set(failEntryOnce);
	const fiveHundreds = new Map(Object.entries(fail500));
	// Records (partition key, data) already seen on the storeThenFail stream, and how many calls were failed.
	const seenRecords = new Set();
	let failedAfterStore = 0;
	const log = [];
	const delivered = [];

	const started = Date.now();
	const server = http2.createServer();
	// Which HTTP/2 connection (session) each request came on, numbered from 1.
	const sessionNumbers = new WeakMap();
	let sessionCount = 0;
	server.on('session', session => sessionNumbers.set(session, ++sessionCount));
	server.on('request', (req, res) => {
		const chunks = [];
		req.on('data', c => chunks.push(c));
		req.on('end', () => {
			handle(req, res, Buffer.concat(chunks)).catch(e => {
				log.push({ error: String(e) });
				res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
			});
		});
	});

	async function handle(req, res, body) {
		const amzTarget = req.headers['x-amz-target'] ?? null;
		const entry = {
			at_ms: Date.now() - started,
			connection: sessionNumbers.get(req.stream.session) ?? null,
			http_version: req.httpVersion,
			scheme: req.headers[':scheme'],
			method: req.method,
			target: amzTarget,
			invocation_id: req.headers['amz-sdk-invocation-id'] ?? null,
			sdk_request: req.headers['amz-sdk-request'] ?? null,
		};
		log.push(entry);
		let forwardBody = body;
		let failedIndexes = [];
		let request = null;
		if (amzTarget === PUT_RECORDS) {
			request = JSON.parse(body.toString('utf8'));
			const keys = request.Records.map(r => r.PartitionKey);
			entry.stream = request.StreamName;
			entry.partition_keys = keys;
			const fatal = keys.find(k => (fiveHundreds.get(k) ?? 0) > 0);
			if (fatal !== undefined) {
				fiveHundreds.set(fatal, fiveHundreds.get(fatal) - 1);
				entry.status = 500;
				entry.injected = 'http 500';
				return answer(res, 500, { 'x-amzn-errortype': 'InternalFailure' },
					JSON.stringify({ __type: 'InternalFailure', message: 'injected by the loopback front' }));
			}
			failedIndexes = keys.flatMap((k, i) => (toFailOnce.delete(k) ? [i] : []));
			if (failedIndexes.length > 0) {
				entry.injected = 'failed entries';
				const kept = request.Records.filter((_, i) => !failedIndexes.includes(i));
				if (kept.length === 0) {
					entry.status = 200;
					entry.failed_partition_keys = failedIndexes.map(i => keys[i]);
					return answer(res, 200, { 'content-type': 'application/x-amz-json-1.1' }, JSON.stringify({
						FailedRecordCount: failedIndexes.length,
						Records: failedIndexes.map(() => throttled(request.StreamName)),
					}));
				}
				forwardBody = Buffer.from(JSON.stringify({ ...request, Records: kept }), 'utf8');
			}
		}
		let failAfterStore = null;
		if (request && storeThenFail && request.StreamName === storeThenFail.stream) {
			const fresh = request.Records.map(r => JSON.stringify([r.PartitionKey, r.Data])).filter(k => !seenRecords.has(k));
			if (fresh.length > 0 && storeThenFail.answers.length > 0) {
				fresh.forEach(k => seenRecords.add(k));
				failAfterStore = storeThenFail.answers[failedAfterStore++ % storeThenFail.answers.length];
			}
		}
		const upstreamAnswer = await forward(req, forwardBody);
		entry.status = upstreamAnswer.status;
		let answerBody = upstreamAnswer.body;
		if (request && upstreamAnswer.status === 200) {
			const parsed = JSON.parse(answerBody.toString('utf8'));
			const kept = request.Records.filter((_, i) => !failedIndexes.includes(i));
			parsed.Records.forEach((r, i) => {
				if (!r.ErrorCode) {
					delivered.push({ stream: request.StreamName, partitionKey: kept[i].PartitionKey, data: kept[i].Data, answered: failAfterStore === null });
				}
			});
			if (failAfterStore !== null) {
				if (failAfterStore === 'drop') {
					entry.status = null;
					entry.injected = 'stored, then answer dropped';
					res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
					return undefined;
				}
				entry.status = 500;
				entry.injected = 'stored, then http 500';
				return answer(res, 500, { 'x-amzn-errortype': 'InternalFailure' },
					JSON.stringify({ __type: 'InternalFailure', message: 'injected by the loopback front after moto stored the records' }));
			}
			if (failedIndexes.length > 0) {
				const merged = [];
				let next = 0;
				request.Records.forEach((_, i) => {
					merged.push(failedIndexes.includes(i) ? throttled(request.StreamName) : parsed.Records[next++]);
				});
				parsed.Records = merged;
				parsed.FailedRecordCount = (parsed.FailedRecordCount ?? 0) + failedIndexes.length;
				entry.failed_partition_keys = failedIndexes.map(i => request.Records[i].PartitionKey);
				answerBody = Buffer.from(JSON.stringify(parsed), 'utf8');
			}
		}
		return answer(res, upstreamAnswer.status, upstreamAnswer.headers, answerBody);
	}

	function forward(req, body) {
		const headers = {};
		for (const [k, v] of Object.entries(req.headers)) {
			if (!k.startsWith(':')) headers[k] = v;
		}
		headers.host = target.host;
		headers['content-length'] = String(body.length);
		return new Promise((resolve, reject) => {
			const out = http.request({
				hostname: target.hostname,
				port: target.port,
				method: req.method,
				path: req.url,
				headers,
			}, upstreamRes => {
				const chunks = [];
				upstreamRes.on('data', c => chunks.push(c));
				upstreamRes.on('end', () => resolve({
					status: upstreamRes.statusCode,
					headers: upstreamRes.headers,
					body: Buffer.concat(chunks),
				}));
				upstreamRes.on('error', reject);
			});
			out.on('error', reject);
			out.end(body);
		});
	}

	await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
	const { port } = server.address();
	return {
		origin: `http://127.0.0.1:${port}`,
		log,
		delivered,
		close: () => new Promise(resolve => server.close(resolve)),
	};
}

function throttled(stream) {
	return {
		ErrorCode: 'ProvisionedThroughputExceededException',
		ErrorMessage: `Rate exceeded for shard shardId-000000000000 in stream ${stream} under account 123456789012 (injected by the loopback front).`,
	};
}

// HTTP/1.1 connection headers are not allowed in HTTP/2 answers.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'content-length', 'date', 'server']);

function answer(res, status, headers, body) {
	const out = {};
	for (const [k, v] of Object.entries(headers)) {
		if (!HOP_BY_HOP.has(k.toLowerCase())) out[k.toLowerCase()] = v;
	}
	out['content-length'] = String(Buffer.byteLength(body));
	res.writeHead(status, out);
	res.end(body);
}
