// rabbitmq/amqp091-go workload: topology, confirms, prefetch, manual acks, reject to a DLX,
// properties and headers read back.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func must(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
}

func check(ok bool, what string) {
	if !ok {
		fmt.Fprintln(os.Stderr, "check failed:", what)
		os.Exit(1)
	}
}

func main() {
	tag := "go"
	conn, err := amqp.Dial(os.Args[1])
	must(err, "dial")
	defer conn.Close()
	ch, err := conn.Channel()
	must(err, "channel")
	ex, dlx, q, dead := "ex-"+tag, "dlx-"+tag, "q-"+tag, "dead-"+tag
	must(ch.ExchangeDeclare(ex, "topic", false, true, false, false, nil), "exchange")
	must(ch.ExchangeDeclare(dlx, "fanout", false, true, false, false, nil), "dlx")
	_, err = ch.QueueDeclare(q, false, false, false, false, amqp.Table{"x-dead-letter-exchange": dlx})
	must(err, "queue")
	_, err = ch.QueueDeclare(dead, false, false, false, false, nil)
	must(err, "dead queue")
	must(ch.QueueBind(q, "orders.*", ex, false, nil), "bind")
	must(ch.QueueBind(dead, "", dlx, false, nil), "bind dead")
	must(ch.Confirm(false), "confirm")
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 10))
	for n := 0; n < 10; n++ {
		must(ch.Publish(ex, "orders.new", false, false, amqp.Publishing{
			ContentType: "text/plain", DeliveryMode: amqp.Persistent, CorrelationId: "c" + strconv.Itoa(n),
			Headers: amqp.Table{"n": int32(n), "lang": tag}, Body: []byte(strconv.Itoa(n)),
		}), "publish")
	}
	for n := 0; n < 10; n++ {
		select {
		case c := <-confirms:
			check(c.Ack, "confirm ack")
		case <-time.After(5 * time.Second):
			check(false, "confirm timeout")
		}
	}
	must(ch.Qos(5, 0, false), "qos")
	deliveries, err := ch.Consume(q, "", false, false, false, false, nil)
	must(err, "consume")
	seen := 0
	for seen < 10 {
		select {
		case d := <-deliveries:
			n, _ := strconv.Atoi(string(d.Body))
			check(d.CorrelationId == "c"+strconv.Itoa(n), "correlation id")
			check(fmt.Sprint(d.Headers["n"]) == strconv.Itoa(n), "header n")
			check(d.Headers["lang"] == tag, "header lang")
			check(d.DeliveryMode == amqp.Persistent, "delivery mode")
			if n == 3 {
				must(d.Reject(false), "reject")
			} else {
				must(d.Ack(false), "ack")
			}
			seen++
		case <-time.After(5 * time.Second):
			check(false, "consume timeout")
		}
	}
	var got amqp.Delivery
	ok := false
	for i := 0; i < 50 && !ok; i++ {
		got, ok, err = ch.Get(dead, true)
		must(err, "get")
		if !ok {
			time.Sleep(50 * time.Millisecond)
		}
	}
	check(ok, "nothing dead-lettered")
	check(string(got.Body) == "3", "dead body")
	deaths, _ := got.Headers["x-death"].([]interface{})
	check(len(deaths) > 0, "x-death present")
	first, _ := deaths[0].(amqp.Table)
	check(first["reason"] == "rejected", "x-death reason")
	_, err = ch.QueueDelete(q, false, false, false)
	must(err, "delete")
	_, err = ch.QueueDelete(dead, false, false, false)
	must(err, "delete dead")
	fmt.Println(tag + ": ok")
}
