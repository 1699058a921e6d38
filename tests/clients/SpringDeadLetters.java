import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.springframework.kafka.core.DefaultKafkaConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaProducerFactory;
import org.springframework.kafka.core.KafkaTemplate;
import org.springframework.kafka.listener.ContainerProperties;
import org.springframework.kafka.listener.DeadLetterPublishingRecoverer;
import org.springframework.kafka.listener.DefaultErrorHandler;
import org.springframework.kafka.listener.KafkaMessageListenerContainer;
import org.springframework.kafka.listener.MessageListener;
import org.springframework.util.backoff.FixedBackOff;

/**
 * A Spring Kafka listener that fails, as an application would: its container's
 * DefaultErrorHandler hands each failed record to DeadLetterPublishingRecoverer, which
 * publishes it to TOPIC.DLT with Spring's own headers. Each record's value names the
 * failure to throw: "state:...", "npe:..." or "arg:..."; anything else is processed.
 *
 * Usage: SpringDeadLetters BOOTSTRAP TOPIC GROUP EXPECTED_FAILURES
 */
public class SpringDeadLetters {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[2];
        int expected = Integer.parseInt(args[3]);
        Map<String, Object> producer = new HashMap<>();
        producer.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        producer.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        producer.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        KafkaTemplate<String, String> template = new KafkaTemplate<>(new DefaultKafkaProducerFactory<>(producer));

        Map<String, Object> consumer = new HashMap<>();
        consumer.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        consumer.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        consumer.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        consumer.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        consumer.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);

        CountDownLatch failures = new CountDownLatch(expected);
        DeadLetterPublishingRecoverer recoverer = new DeadLetterPublishingRecoverer(template) {
            @Override
            public void accept(org.apache.kafka.clients.consumer.ConsumerRecord<?, ?> record,
                               org.apache.kafka.clients.consumer.Consumer<?, ?> consumer, Exception exception) {
                super.accept(record, consumer, exception);
                failures.countDown();
            }
        };
        ContainerProperties properties = new ContainerProperties(topic);
        properties.setMessageListener((MessageListener<String, String>) record -> {
            String value = record.value();
            if (value.startsWith("state:")) {
                throw new IllegalStateException(value.substring(6));
            }
            if (value.startsWith("npe:")) {
                throw new NullPointerException(value.substring(4));
            }
            if (value.startsWith("arg:")) {
                throw new IllegalArgumentException(value.substring(4));
            }
        });
        KafkaMessageListenerContainer<String, String> container =
            new KafkaMessageListenerContainer<>(new DefaultKafkaConsumerFactory<>(consumer), properties);
        container.setCommonErrorHandler(new DefaultErrorHandler(recoverer, new FixedBackOff(0L, 0L)));
        container.start();
        boolean done = failures.await(120, TimeUnit.SECONDS);
        template.flush();
        container.stop();
        System.out.println(done ? "dead-lettered " + expected : "timed out");
        System.exit(done ? 0 : 1);
    }
}
