"""pika over AMQPS: a client without a certificate logs in with PLAIN, one with a client
certificate (common name = a user created through the management API) with SASL EXTERNAL.
Usage: pika_tls_workload.py HOST AMQPS_PORT MGMT_PORT CERT_DIR
CERT_DIR holds ca.pem, client.pem and client.key (the client certificate's CN: tls-client)."""
import base64
import json
import ssl
import sys
import urllib.request

import pika

host, port, mgmt, certs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


def api(method, path, body):
    req = urllib.request.Request(
        f"http://{host}:{mgmt}/api/{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={
            "content-type": "application/json",
            "authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
        },
    )
    return urllib.request.urlopen(req).status


def context(with_cert):
    ctx = ssl.create_default_context(cafile=f"{certs}/ca.pem")
    ctx.check_hostname = True
    if with_cert:
        ctx.load_cert_chain(f"{certs}/client.pem", f"{certs}/client.key")
    return ctx


def round_trip(params, name):
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    q = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.basic_publish("", q, name.encode())
    _, _, body = ch.basic_get(q, auto_ack=True)
    assert body == name.encode(), body
    conn.close()


ssl_opts = lambda cert: pika.SSLOptions(context(cert), server_hostname="localhost")
# PLAIN over TLS, no client certificate.
round_trip(
    pika.ConnectionParameters(
        host, port, ssl_options=ssl_opts(False),
        credentials=pika.PlainCredentials("guest", "guest"),
    ),
    "plain over tls",
)
# EXTERNAL: the certificate's CN is the user.
api("PUT", "users/tls-client", {"password_hash": "", "tags": ""})
api("PUT", "permissions/%2F/tls-client", {"configure": ".*", "write": ".*", "read": ".*"})
round_trip(
    pika.ConnectionParameters(
        host, port, ssl_options=ssl_opts(True),
        credentials=pika.credentials.ExternalCredentials(),
    ),
    "external over tls",
)
print("ok")
