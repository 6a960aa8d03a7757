// Laravel Echo configured as a Laravel app configures it (the Pusher broadcaster, the
// stack's push server, /broadcasting/auth with a bearer token), for the Node tests.
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';

export function echoFor(token) {
  return new Echo({
    broadcaster: 'pusher',
    key: process.env.PUSHER_APP_KEY,
    cluster: 'mt1',
    wsHost: process.env.PUSHER_HOST,
    wsPort: Number(process.env.PUSHER_PORT),
    wssPort: Number(process.env.PUSHER_PORT),
    forceTLS: false,
    enabledTransports: ['ws', 'wss'],
    authEndpoint: `${process.env.INFERPUSH_API_URL}/broadcasting/auth`,
    auth: { headers: { Authorization: `Bearer ${token}` } },
    Pusher,
  });
}
