// Command payq-producer-go is payq's conformance producer in Go (franz-go).
//
// It reads commands as JSON lines, builds each v1 command, validates it against
// schema/command.schema.json, and produces it keyed by order ID with acks=all and
// idempotence, a fresh W3C traceparent header on each. The one setting that matters is
// kgo.StickyKeyPartitioner(nil): keyed records hashed with Kafka's murmur2, as the Java
// client does.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/twmb/franz-go/pkg/kgo"
)

var commandFields = []string{"v", "type", "command_id", "order_id", "amount_minor", "currency",
	"customer_id", "payer_id", "reason"}

// buildCommand keeps only the fields the wire format names, and sets v to 1.
func buildCommand(fields map[string]any) map[string]any {
	cmd := map[string]any{}
	for _, f := range commandFields {
		if v, ok := fields[f]; ok {
			cmd[f] = v
		}
	}
	cmd["v"] = json.Number("1")
	return cmd
}

// traceparent is a fresh W3C trace context: version 00, random trace and span IDs, sampled.
func traceparent() string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-01"
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "payq-producer-go: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	brokers := flag.String("brokers", "", "Kafka bootstrap servers")
	topic := flag.String("topic", "payq.commands", "commands topic")
	schemaPath := flag.String("schema", "", "path to command.schema.json")
	flag.Parse()
	if *brokers == "" || *schemaPath == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: payq-producer-go --brokers B [--topic T] --schema FILE INPUT.jsonl")
		os.Exit(2)
	}
	schema, err := jsonschema.NewCompiler().Compile(*schemaPath)
	if err != nil {
		fail("schema: %v", err)
	}
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(*brokers, ",")...),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotence is on by default and needs it
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // nil: Kafka's murmur2
		kgo.ClientID("payq-conformance-go"),
		kgo.ProducerLinger(5*time.Millisecond),
	)
	if err != nil {
		fail("client: %v", err)
	}
	defer client.Close()

	in, err := os.Open(flag.Arg(0))
	if err != nil {
		fail("%v", err)
	}
	defer in.Close()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		failed  []string
		sent, n int
	)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		n++
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.UseNumber() // amount_minor stays an exact integer
		var fields map[string]any
		if err := dec.Decode(&fields); err != nil {
			fail("line %d: %v", n, err)
		}
		cmd := buildCommand(fields)
		if err := schema.Validate(cmd); err != nil {
			fail("line %d: invalid command: %v", n, err)
		}
		value, err := json.Marshal(cmd)
		if err != nil {
			fail("line %d: %v", n, err)
		}
		rec := &kgo.Record{
			Topic: *topic,
			Key:   []byte(cmd["order_id"].(string)),
			Value: value,
			Headers: []kgo.RecordHeader{
				{Key: "content-type", Value: []byte("application/json")},
				{Key: "payq-type", Value: []byte(cmd["type"].(string))},
				{Key: "payq-command-id", Value: []byte(cmd["command_id"].(string))},
				{Key: "traceparent", Value: []byte(traceparent())},
			},
		}
		wg.Add(1)
		client.Produce(context.Background(), rec, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				failed = append(failed, string(r.Key)+": "+err.Error())
				mu.Unlock()
			}
		})
		sent++
	}
	if err := sc.Err(); err != nil {
		fail("%v", err)
	}
	wg.Wait()
	if len(failed) > 0 {
		fail("%d not delivered, first: %s", len(failed), failed[0])
	}
	fmt.Fprintf(os.Stderr, "go: %d commands delivered to %s\n", sent, *topic)
}
