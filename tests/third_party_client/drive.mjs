// Drives kling-api (a third-party Kling client for Node, pinned in package.json) the way its README
// does, configured with nothing but credentials and a base URL: one create call, then the library's
// own wait-for-result, which polls the library's own query call until the task is final; then the
// same query by external_task_id when one was sent. tests/test_third_party_client.py runs it.
//
// Input, argv[2] as JSON: {baseUrl, accessKey, secretKey, create, query, wait, params}, where create,
// query and wait name KlingAPI methods (imageToVideo, queryImageToVideoTask, waitForVideoResult).
// Output on stdout, JSON: {created, done, byExternalId} or {error: {name, message, code, httpStatus}}.
import { KlingAPI } from 'kling-api';

const job = JSON.parse(process.argv[2]);
const api = new KlingAPI({ accessKey: job.accessKey, secretKey: job.secretKey, baseUrl: job.baseUrl });

try {
  const created = await api[job.create](job.params);
  const query = (id) => api[job.query](id);
  const options = { interval: 100, timeout: 60000, showSpinner: false };
  const done = await api[job.wait](created.data.task_id, query, options);
  const external = job.params.external_task_id;
  const byExternalId = external === undefined ? null : await query(external);
  process.stdout.write(JSON.stringify({ created, done, byExternalId }));
} catch (error) {
  const { name, message, code, httpStatus } = error;
  process.stdout.write(JSON.stringify({ error: { name, message, code, httpStatus } }));
  process.exitCode = 1;
}
