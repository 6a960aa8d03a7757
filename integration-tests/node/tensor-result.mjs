// A real pusher-js client receives a tensor model's result pushed as an ordinary task's:
// it subscribes to alice's channel, submits the KServe v2 request in TENSOR_REQUEST to
// TENSOR_MODEL through POST /v1/inference, and prints the inference.completed event's data
// as one JSON line ("RESULT {...}") for the Rust test to compare with ONNX Runtime's.
import Pusher from 'pusher-js';

const api = process.env.INFERPUSH_API_URL;
const pusher = new Pusher(process.env.PUSHER_APP_KEY, {
  wsHost: process.env.PUSHER_HOST,
  wsPort: Number(process.env.PUSHER_PORT),
  forceTLS: false,
  enabledTransports: ['ws'],
  cluster: 'local',
  channelAuthorization: {
    endpoint: `${api}/pusher/auth`,
    transport: 'ajax',
    headers: { Authorization: 'Bearer dev-alice' },
  },
});
const timer = setTimeout(() => {
  console.log('TIMEOUT no inference.completed in 60 s');
  process.exit(1);
}, 60000);
const channel = pusher.subscribe('private-inference.alice');
channel.bind('pusher:subscription_error', (error) => {
  console.log(`ERROR ${JSON.stringify(error)}`);
  process.exit(1);
});
// Bound before the submit: the result may come before the submit's answer is read.
const completed = [];
let accepted = null;
function finish(data) {
  if (!accepted || data.task_id !== accepted.task_id) return;
  console.log(`RESULT ${JSON.stringify(data)}`);
  clearTimeout(timer);
  pusher.disconnect();
  process.exit(0);
}
channel.bind('inference.completed', (data) => {
  completed.push(data);
  finish(data);
});
channel.bind('pusher:subscription_succeeded', async () => {
  const response = await fetch(`${api}/v1/inference`, {
    method: 'POST',
    headers: { Authorization: 'Bearer dev-alice', 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: process.env.TENSOR_MODEL, input: JSON.parse(process.env.TENSOR_REQUEST) }),
  });
  accepted = await response.json();
  console.log(`ACCEPTED ${response.status} ${JSON.stringify(accepted)}`);
  completed.forEach(finish);
});
