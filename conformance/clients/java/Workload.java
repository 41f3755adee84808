// RabbitMQ's Java client (Debian's librabbitmq-client-java 5.x) workload: topology, confirms,
// prefetch, manual acks, reject to a DLX, properties and headers read back.
import com.rabbitmq.client.*;
import java.nio.charset.StandardCharsets;
import java.util.*;
import java.util.concurrent.*;

public class Workload {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        String tag = "java";
        ConnectionFactory f = new ConnectionFactory();
        f.setUri(args[0]);
        try (Connection conn = f.newConnection()) {
            Channel ch = conn.createChannel();
            String ex = "ex-" + tag, dlx = "dlx-" + tag, q = "q-" + tag, dead = "dead-" + tag;
            ch.exchangeDeclare(ex, "topic", false, true, null);
            ch.exchangeDeclare(dlx, "fanout", false, true, null);
            ch.queueDeclare(q, false, false, false, Map.of("x-dead-letter-exchange", dlx));
            ch.queueDeclare(dead, false, false, false, null);
            ch.queueBind(q, ex, "orders.*");
            ch.queueBind(dead, dlx, "");
            ch.confirmSelect();
            for (int n = 0; n < 10; n++) {
                AMQP.BasicProperties props = new AMQP.BasicProperties.Builder()
                    .contentType("text/plain").deliveryMode(2).correlationId("c" + n)
                    .headers(Map.of("n", n, "lang", tag)).build();
                ch.basicPublish(ex, "orders.new", props, ("" + n).getBytes(StandardCharsets.UTF_8));
            }
            ch.waitForConfirmsOrDie(5000);
            ch.basicQos(5);
            List<Integer> seen = Collections.synchronizedList(new ArrayList<>());
            CountDownLatch done = new CountDownLatch(10);
            ch.basicConsume(q, false, new DefaultConsumer(ch) {
                @Override
                public void handleDelivery(String ctag, Envelope env, AMQP.BasicProperties p, byte[] body) throws java.io.IOException {
                    int n = Integer.parseInt(new String(body, StandardCharsets.UTF_8));
                    check(("c" + n).equals(p.getCorrelationId()), "correlation id");
                    check(Integer.valueOf(n).equals(p.getHeaders().get("n")), "header n");
                    check(tag.equals(p.getHeaders().get("lang").toString()), "header lang");
                    check(p.getDeliveryMode() == 2, "delivery mode");
                    if (n == 3) getChannel().basicReject(env.getDeliveryTag(), false);
                    else getChannel().basicAck(env.getDeliveryTag(), false);
                    seen.add(n);
                    done.countDown();
                }
            });
            check(done.await(5, TimeUnit.SECONDS), "timed out after " + seen.size());
            GetResponse got = null;
            for (int i = 0; i < 50 && got == null; i++) {
                got = ch.basicGet(dead, true);
                if (got == null) Thread.sleep(50);
            }
            check(got != null, "nothing dead-lettered");
            check("3".equals(new String(got.getBody(), StandardCharsets.UTF_8)), "dead body");
            @SuppressWarnings("unchecked")
            List<Map<String, Object>> deaths = (List<Map<String, Object>>) got.getProps().getHeaders().get("x-death");
            check("rejected".equals(deaths.get(0).get("reason").toString()), "x-death reason");
            // A channel-level error closes only that channel.
            Channel probe = conn.createChannel();
            try {
                probe.queueDeclarePassive("no-such-queue-" + System.nanoTime());
                check(false, "passive declare of a missing queue succeeded");
            } catch (java.io.IOException e) {
                check(conn.isOpen(), "connection survived a channel error");
            }
            ch.queueDelete(q);
            ch.queueDelete(dead);
        }
        System.out.println(tag + ": ok");
    }
}
