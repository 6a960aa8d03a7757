// A real MQTT client (mqtt.js) subscribed at QoS 1 with a persistent session, as a
// device would be: it prints `connected`, `subscribed` and one `message {json}` line per
// message, and reconnects by itself when the broker goes away.
import mqtt from 'mqtt';

const client = mqtt.connect(process.env.MQTT_URL, {
  clientId: process.env.MQTT_CLIENT_ID,
  username: process.env.MQTT_USERNAME,
  password: process.env.MQTT_PASSWORD,
  clean: false,
  reconnectPeriod: 200,
  protocolVersion: 4,
});
client.on('connect', (ack) => {
  console.log(`connected session_present=${ack.sessionPresent}`);
  client.subscribe(process.env.MQTT_TOPIC, { qos: 1 }, (error, granted) => {
    console.log(error ? `error ${error.message}` : `subscribed ${JSON.stringify(granted)}`);
  });
});
client.on('message', (topic, payload) => {
  console.log(`message ${JSON.stringify({ topic, ...JSON.parse(payload.toString()) })}`);
});
client.on('offline', () => console.log('offline'));
client.on('error', (error) => console.log(`error ${error.message}`));
