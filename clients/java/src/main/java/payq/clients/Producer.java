// payq conformance producer in Java (kafka-clients).
//
// Reads commands as JSON lines, builds each v1 command, validates it against
// schema/command.schema.json, and produces it keyed by order ID with acks=all and
// idempotence, a fresh W3C traceparent header on each. kafka-clients needs no partitioner
// setting: keyed records go through murmur2, the placement every payq producer matches.
package payq.clients;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.networknt.schema.JsonSchema;
import com.networknt.schema.JsonSchemaFactory;
import com.networknt.schema.SpecVersion;
import com.networknt.schema.ValidationMessage;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.Future;
import java.util.ArrayList;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

public final class Producer {
    private static final List<String> FIELDS = List.of("v", "type", "command_id", "order_id",
            "amount_minor", "currency", "customer_id", "payer_id", "reason");
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final SecureRandom RANDOM = new SecureRandom();

    /** A v1 command from the given fields: only the fields the wire format names. */
    static ObjectNode buildCommand(JsonNode fields) {
        ObjectNode cmd = JSON.createObjectNode();
        for (String f : FIELDS) {
            if (fields.has(f)) {
                cmd.set(f, fields.get(f));
            }
        }
        cmd.put("v", 1);
        return cmd;
    }

    /** A fresh W3C trace context: version 00, random trace and span IDs, sampled. */
    static String traceparent() {
        byte[] trace = new byte[16];
        byte[] span = new byte[8];
        RANDOM.nextBytes(trace);
        RANDOM.nextBytes(span);
        HexFormat hex = HexFormat.of();
        return "00-" + hex.formatHex(trace) + "-" + hex.formatHex(span) + "-01";
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: Producer BROKERS TOPIC SCHEMA INPUT.jsonl");
            System.exit(2);
        }
        JsonSchema schema = JsonSchemaFactory.getInstance(SpecVersion.VersionFlag.V202012)
                .getSchema(Files.readString(Path.of(args[2])));
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        props.put(ProducerConfig.CLIENT_ID_CONFIG, "payq-conformance-java");
        props.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        // No partitioner.class: the default partitioner hashes keys with murmur2.

        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props);
             BufferedReader in = Files.newBufferedReader(Path.of(args[3]), StandardCharsets.UTF_8)) {
            String line;
            int n = 0;
            while ((line = in.readLine()) != null) {
                n++;
                if (line.isBlank()) {
                    continue;
                }
                ObjectNode cmd = buildCommand(JSON.readTree(line));
                Set<ValidationMessage> errors = schema.validate(cmd);
                if (!errors.isEmpty()) {
                    throw new IOException("line " + n + ": invalid command: " + errors.iterator().next());
                }
                ProducerRecord<String, String> rec = new ProducerRecord<>(args[1],
                        cmd.get("order_id").asText(), JSON.writeValueAsString(cmd));
                rec.headers().add("content-type", bytes("application/json"));
                rec.headers().add("payq-type", bytes(cmd.get("type").asText()));
                rec.headers().add("payq-command-id", bytes(cmd.get("command_id").asText()));
                rec.headers().add("traceparent", bytes(traceparent()));
                sent.add(producer.send(rec));
            }
            producer.flush();
            for (Future<RecordMetadata> f : sent) {
                f.get(); // throws if a record was not delivered
            }
        }
        System.err.println("java: " + sent.size() + " commands delivered to " + args[1]);
    }

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }
}
