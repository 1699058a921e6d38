"""Masking and the grouping of dead-letter reasons, by example, from their specification.

Every expectation here is a literal written from the rules (README, "Masking"), never built by
calling eventscope's own helpers: a wrong rule makes one of these fail.

Keys: a key is personal by its words, whatever the case style (camelCase, PascalCase,
snake_case, kebab-case, dotted, SCREAMING_CASE). "name" is personal alone or after a person
word, not after a word naming a thing (topicName, fileName, hostname); "address" is personal
except after a network word (ipAddress). A value under a personal key is masked whole: a string
or number becomes "***", an object or array keeps its keys and shape with every leaf "***".
Free text: e-mail addresses, Luhn-valid card numbers (grouped by spaces, dashes or dots), phone
numbers, credentials; JSON inside text and form-encoded text have personal keys' values masked.
"""
import json
import time

import pytest

from eventscope import mask
from eventscope.decode import decode_message, failure_reason


@pytest.fixture(autouse=True)
def _default_mask():
    mask.configure()
    yield
    mask.configure()


PERSONAL_KEYS = [
    # e-mail, phone
    "email", "e-mail", "eMail", "EMAIL", "customer_email", "customerEmail", "emailAddress", "phone", "phoneNumber",
    "phone_number", "mobile", "MobileNumber", "telephone", "fax",
    # names of people
    "name", "Name", "NAME", "customerName", "CustomerName", "customer_name", "customer-name", "customer.name",
    "CUSTOMER_NAME", "userName", "user_name", "username", "firstName", "first_name", "firstname", "lastName",
    "last_name", "surname", "fullName", "full_name", "displayName", "nickname", "contact.name", "cardholderName",
    # addresses
    "address", "Address", "billingAddress", "shipping_address", "homeAddress", "addr", "street", "streetName",
    "zip", "zipCode", "zip_code", "postcode", "postal_code", "postCode",
    # cards, bank, identity documents, birth
    "card", "cardNumber", "card_number", "creditCard", "credit-card", "pan", "PAN", "cvv", "CVV", "cvc", "cvv2",
    "iban", "IBAN", "ssn", "SSN", "passport", "passportNumber", "birth", "birthDate", "birthday", "date_of_birth",
    "dateOfBirth", "dob", "DOB",
    # PIN as a whole word
    "pin", "PIN", "cardPin", "pin_code", "pinCode",
    # credentials
    "password", "Password", "PASSWORD", "passwd", "pwd", "userPassword", "secret", "clientSecret", "client_secret",
    "token", "accessToken", "access_token", "refresh-token", "authorization", "Authorization",
    "proxy-authorization", "apiKey", "api_key", "api-key", "x-api-key", "X-API-KEY", "XApiKey", "APIKey", "cookie",
    "Cookie", "set-cookie", "Set-Cookie", "session", "sessionId", "session_id", "session_token", "SESSION_TOKEN",
    "JSESSIONID", "privateKey", "private_key", "PRIVATE_KEY", "accessKey", "secret_key", "credential", "credentials",
    "awsCredentials",
]

NOT_PERSONAL_KEYS = [
    # the envelope fields eventscope reads (decode.DecodeConfig defaults) and its DLQ headers
    "event_type", "eventType", "type", "event_id", "eventId", "id", "correlation_id", "correlationId",
    "correlationid", "metadata", "source", "timestamp", "time", "traceparent", "schema_version", "schemaVersion",
    "dataschema", "payload", "envelope", "ce_type", "ce_id", "ce_source", "ce_time", "ce_dataschema",
    "kafka_dlt-exception-message", "kafka_dlt-exception-fqcn", "kafka_dlt-exception-cause-fqcn",
    "kafka_dlt-original-topic", "__connect.errors.exception.class.name", "__connect.errors.topic",
    # "name" after a word naming a thing
    "topicName", "topic_name", "serviceName", "service.name", "eventName", "groupName", "fileName", "filename",
    "FILE_NAME", "hostname", "hostName", "typeName", "schemaName", "className", "classname", "tableName",
    "productName", "namespace",
    # "pin" and "pan" inside other words
    "shipping", "shippingMethod", "pinned", "spinner", "mapping", "company", "span", "spanId", "expand",
    # "address" of a machine
    "ipAddress", "ip_address", "remote_addr", "REMOTE_ADDR", "macAddress", "bootstrapAddress",
    # ordinary data
    "order_id", "orderId", "amount", "currency", "items", "status", "city", "country", "key", "partition_key",
    "offset", "discard", "retries", "version", "count",
]


@pytest.mark.parametrize("key", PERSONAL_KEYS)
def test_personal_keys_are_recognised_whatever_the_case_style(key):
    assert mask.is_personal_key(key), key
    assert json.loads(mask.masked_payload({key: "Ann Lee"})) == {key: "***"}
    assert json.loads(mask.headers_json({key: b"Ann Lee"})) == {key: "***"}


@pytest.mark.parametrize("key", NOT_PERSONAL_KEYS)
def test_other_keys_are_kept(key):
    assert not mask.is_personal_key(key), key
    assert json.loads(mask.masked_payload({key: "orders-v2"})) == {key: "orders-v2"}
    if key not in ("payload", "envelope"):  # headers carrying the payload itself are left out of headers
        assert json.loads(mask.headers_json({key: b"orders-v2"})) == {key: "orders-v2"}


def test_numbers_and_booleans_under_personal_keys_are_masked_too():
    shown = mask.masked_payload({"pin": 1234, "cvv": 737, "email": None, "ssn": True, "amount": 12.5})
    assert json.loads(shown) == {"pin": "***", "cvv": "***", "email": "***", "ssn": "***", "amount": 12.5}


def test_an_object_or_array_under_a_personal_key_is_masked_whole():
    body = {"event_type": "OrderPlaced", "customer": {"id": "cus_1", "name": "Ann Lee", "phone": "+49 151 2345678"},
            "address": {"street": "Main St 1", "city": "Berlin", "zip": "10115", "geo": [52.52, 13.40],
                        "lines": [{"text": "c/o Lee"}]},
            "emails": ["ann@example.com", "lee@example.org"], "card": {"last4": 1111, "expires": "12/29"},
            "topicName": "orders"}
    assert json.loads(mask.masked_payload(body)) == {
        "event_type": "OrderPlaced", "customer": {"id": "cus_1", "name": "***", "phone": "***"},
        "address": {"street": "***", "city": "***", "zip": "***", "geo": ["***", "***"],
                    "lines": [{"text": "***"}]},
        "emails": ["***", "***"], "card": {"last4": "***", "expires": "***"}, "topicName": "orders"}
    assert json.loads(mask.preview(json.dumps({"address": {"street": "Main St 1"}}).encode())) == \
        {"address": {"street": "***"}}


def test_the_envelope_is_never_masked_and_still_decodes():
    env = {"event_type": "OrderPlaced", "event_id": "evt_1", "correlation_id": "c-1", "source": "checkout",
           "timestamp": "2026-11-28T10:00:00Z", "data": {"customerName": "Ann Lee"}}
    assert json.loads(mask.masked_payload(env)) == {**env, "data": {"customerName": "***"}}
    row = decode_message(json.dumps(env).encode(), {})
    assert (row["event_type"], row["event_id"], row["correlation_id"], row["service"]) == \
        ("OrderPlaced", "evt_1", "c-1", "checkout")


def test_extra_fields_are_exact_and_case_insensitive():
    mask.configure(fields=["customer_id", "Kunde"])
    assert json.loads(mask.masked_payload({"customer_id": "cus_1", "CUSTOMER_ID": "cus_2", "customer_id_2": "x",
                                           "kunde": "K-7", "order_id": "o-1"})) == \
        {"customer_id": "***", "CUSTOMER_ID": "***", "customer_id_2": "x", "kunde": "***", "order_id": "o-1"}
    assert json.loads(mask.headers_json({"Customer_Id": b"cus_1"})) == {"Customer_Id": "***"}


# ---- free text ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, shown", [
    ("mail first.last@example.com now", "mail ***@*** now"),
    ("ada@example.com", "***@***"),
    ("to: a.b-c+tag@mail.example.co.uk;", "to: ***@***;"),
    ("card 4111 1111 1111 1111 declined", "card **** declined"),
    ("card 4111-1111-1111-1111 declined", "card **** declined"),
    ("card 4111.1111.1111.1111 declined", "card **** declined"),
    ("card 4111111111111111 declined", "card **** declined"),
    ("amex 3782 822463 10005", "amex ****"),
    ("call +49 151 2345678 now", "call *** now"),
    ("(555) 123-4567", "***"),
    ("555-123-4567", "***"),
    ("+4915123456789", "***"),
])
def test_free_text_personal_data_is_masked(text, shown):
    assert mask.mask_text(text) == shown
    assert json.loads(mask.masked_payload({"note": text})) == {"note": shown}
    assert json.loads(mask.headers_json({"x-note": text.encode()})) == {"x-note": shown}


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112 declined",   # one digit changed: fails the Luhn check
    "card 4111.1111.1111.1112 declined",
    "card 4111-1111-1111-1112 declined",
    "order 4111111111111112",
    "order 1234567890123456",              # an order number, Luhn-invalid
    "1795841908571-0",                     # a Redis entry ID
    "at 1795841908571",                    # epoch milliseconds
    "2026-11-28", "2026-11-28T10:00:00.123Z", "28.11.2026 10:00",
    "192.168.100.200", "192.168.100.209", "411.111.111.111.9", "10.0.0.1:9092", "2001:db8::1",  # Luhn-valid, not cards
    "v1.2.3", "version 2026.11.28.1234", "3.14159265358979", "1234567.89",
    "0af76519-16cd-43dd-8448-eb211c80319c", "evt_1234567890abcdef", "0af7651916cd43dd8448eb211c80319c",
    "order 1041 at 12:30", "shipping to pinned spinner mapping",
    "retries=3&topic=orders&partition=2",
    '{"topicName": "orders", "count": 3}',
])
def test_free_text_that_is_not_personal_is_kept(text):
    assert mask.mask_text(text) == text
    assert json.loads(mask.masked_payload({"note": text})) == {"note": text}


def test_the_luhn_check_decides():
    assert mask.mask_text("4539 1488 0343 6467") == "****"  # Luhn-valid
    assert mask.mask_text("4539 1488 0343 6468") == "4539 1488 0343 6468"
    assert mask.mask_text("5555.5555.5555.4444") == "****"
    assert mask.mask_text("5555.5555.5555.4445") == "5555.5555.5555.4445"


def test_credentials_in_text_are_masked():
    assert mask.mask_text("Authorization: Bearer eyJhbGciOi.J9x.yz") == "Authorization: Bearer ***"
    assert mask.mask_text("login failed password=hunter2 for bob") == "login failed password=*** for bob"
    assert json.loads(mask.masked_payload({"note": "api_key: 8f1e2d3c"})) == {"note": "api_key: ***"}
    assert json.loads(mask.masked_payload({"note": "Bearer\teyJhbGciOi.J9x"})) == {"note": "Bearer\t***"}
    assert json.loads(mask.headers_json({"x-note": b"Basic QWxhZGRpbjpvcGVu"})) == {"x-note": "Basic ***"}


def test_json_inside_text_has_personal_keys_masked():
    header = b'{"email": "a@b.co", "id": 7, "pin": 1234, "topicName": "orders"}'
    assert json.loads(mask.headers_json({"x-user": header})) == \
        {"x-user": '{"email": "***", "id": 7, "pin": "***", "topicName": "orders"}'}
    assert json.loads(mask.headers_json({"x-user": b'{"customerName": "Ann Lee"}'})) == \
        {"x-user": '{"customerName": "***"}'}
    assert json.loads(mask.masked_payload({"raw": '{"fullName": "Ann Lee"}'})) == {"raw": '{"fullName": "***"}'}
    message = 'rejected {"customerName":"Ann Lee","address":{"street":"Main 1","zip":10115},"tags":["a"]} at 10:00'
    assert mask.mask_text(message) == \
        'rejected {"customerName":"***","address":{"street":"***","zip":"***"},"tags":["a"]} at 10:00'
    # cut off (a header value shortened by the producer): what follows the key is its value
    assert mask.mask_text('{"id": 7, "fullName": "Ann Le') == '{"id": 7, "fullName": "***"'
    # a string value of a payload that is itself JSON
    assert json.loads(mask.masked_payload({"raw": '{"apiKey": "k-123", "n": 1}'})) == \
        {"raw": '{"apiKey": "***", "n": 1}'}


def test_form_encoded_text_has_personal_keys_masked():
    assert mask.mask_text("user=bob&email=a%40b.co&password=x") == "user=bob&email=***&password=***"
    assert json.loads(mask.masked_payload({"body": "user=bob&email=a%40b.co"})) == {"body": "user=bob&email=***"}
    assert json.loads(mask.headers_json({"x-body": b"user=bob&email=a%40b.co"})) == {"x-body": "user=bob&email=***"}
    assert mask.mask_text("POST /login?e%6Dail=a%40b.co&next=%2Fhome HTTP/1.1") == \
        "POST /login?e%6Dail=***&next=%2Fhome HTTP/1.1"
    assert mask.mask_text("GET https://shop.example/cb?session_id=s3cr3t&page=2") == \
        "GET https://shop.example/cb?session_id=***&page=2"
    assert json.loads(mask.headers_json({"referer": b"https://a.example/p?first_name=Ann&sort=asc"})) == \
        {"referer": "https://a.example/p?first_name=***&sort=asc"}
    assert json.loads(mask.headers_json({"x-state": b"JSESSIONID=abc123; theme=dark"})) == \
        {"x-state": "JSESSIONID=***; theme=dark"}
    assert json.loads(mask.headers_json({"x-cookie-copy": b"theme=dark"})) == {"x-cookie-copy": "***"}


def test_masking_off_keeps_everything():
    mask.configure(enabled=False)
    assert mask.mask_text("ann@example.com 4111 1111 1111 1111") == "ann@example.com 4111 1111 1111 1111"
    assert json.loads(mask.masked_payload({"email": "ann@example.com"})) == {"email": "ann@example.com"}


@pytest.mark.parametrize("hostile", [
    "x" * 1_000_000, "1." * 500_000, "9" * 1_000_000, "4111.1111.1111.1111 " * 50_000, '"a":' * 250_000,
    '"email": "' + "x" * 1_000_000, '{"address": ' + "[" * 200_000, "a=b&" * 250_000, "@" * 1_000_000,
    'password="' * 100_000, '{"x":' * 100_000 + "1" + "}" * 100_000, '"' * 1_000_000,
])
def test_hostile_text_is_masked_in_linear_time(hostile):
    started = time.process_time()
    mask.mask_text(hostile)
    mask.headers_json({"h": hostile.encode()})
    mask.masked_payload({"note": hostile})
    assert time.process_time() - started < 10  # about a second on a slow shared core; quadratic takes hours


def test_deep_json_payloads_stay_bounded():
    deep = {"address": None}
    for _ in range(200):
        deep = {"address": deep}
    assert mask.masked_payload(deep).count('"***"') == 1
    assert mask.masked_payload({"a": [[[["ann@example.com"]]]]}) == '{"a":[[[["***@***"]]]]}'
    assert mask.preview(b"[" * 100_000 + b"]" * 100_000).startswith("[[[")  # deeper than the parser goes: as text


def test_every_personal_word_is_seen_by_the_whole_text_pre_check():
    """masked_payload skips the walk when no token of mask._PII_TOKENS is in the payload's text:
    each word the key rules use must contain one (as do both words of each pair)."""
    words = set(mask._PERSONAL_WORDS) | set(mask._PERSONAL_STEMS) | set(mask._PERSONAL_ENDINGS) \
        | mask._NAME_WORDS | mask._ADDRESS_WORDS
    for word in words:
        assert any(token in word for token in mask._PII_TOKENS), word
    for pair in mask._PERSONAL_PAIRS:
        assert any(token in part for part in pair for token in mask._PII_TOKENS), pair


# ---- dead-letter reasons ------------------------------------------------------------------

def _spring(message: bytes, cls: bytes = b"com.shop.PaymentDeclinedException") -> dict:
    return {"kafka_dlt-exception-fqcn": cls, "kafka_dlt-exception-message": message,
            "kafka_dlt-original-topic": b"payments"}


@pytest.mark.parametrize("messages, reason", [
    ((b"card declined for order 1041", b"card declined for order 77"),
     "PaymentDeclinedException: card declined for order #"),
    ((b"no stock for item 3f2b8c1e-9a4d-4c6e-8f00-1234567890ab", b"no stock for item 0c9a7d52-1b3e-4f6a-a0b1-c2d3e4f5a6b7"),
     "PaymentDeclinedException: no stock for item #"),
    ((b"bad frame at 0x1f3a", b"bad frame at 0xff"), "PaymentDeclinedException: bad frame at #"),
    ((b"trace 0af7651916cd43dd8448eb211c80319c lost", b"trace 4bf92f3577b34da6a3ce929d0e0e4736 lost"),
     "PaymentDeclinedException: trace # lost"),
    ((b"timeout after 30000 ms (attempt 3 of 5)", b"timeout after 5 ms (attempt 1 of 5)"),
     "PaymentDeclinedException: timeout after # ms (attempt # of #)"),
    ((b"mail to first.last@example.com refused", b"mail to ann@example.org refused"),
     "PaymentDeclinedException: mail to ***@*** refused"),
    ((b"limit  exceeded:\n  amount 12.50", b"limit exceeded: amount 7.00"),
     "PaymentDeclinedException: limit exceeded: amount #.#"),
])
def test_reasons_differing_only_in_numbers_and_ids_share_one_group(messages, reason):
    for message in messages:
        cls, grouped = failure_reason(_spring(message))
        assert (cls, grouped) == ("com.shop.PaymentDeclinedException", reason)
        assert decode_message(b'{"event_type": "X"}', _spring(message))["dlq_reason"] == reason


def test_reasons_keep_the_words_that_tell_failures_apart():
    assert failure_reason(_spring(b"card declined"))[1] == "PaymentDeclinedException: card declined"
    assert failure_reason(_spring(b"card expired"))[1] == "PaymentDeclinedException: card expired"
    # words made of hex letters are words, not IDs
    assert failure_reason(_spring(b"bad cafe beef"))[1] == "PaymentDeclinedException: bad cafe beef"
    # a class named in the message itself
    assert failure_reason({"error": b"PaymentDeclinedError: card declined for order 9"}) == \
        ("PaymentDeclinedError", "PaymentDeclinedError: card declined for order #")
    # the class alone, or the message alone
    assert failure_reason({"kafka_dlt-exception-fqcn": b"java.lang.NullPointerException"}) == \
        ("java.lang.NullPointerException", "NullPointerException")
    assert failure_reason({"__connect.errors.exception.message": b"bad schema 12"}) == (None, "bad schema #")
    assert failure_reason({"kafka_dlt-original-topic": b"payments"}) == (None, None)


def test_reasons_are_cut_at_160_characters():
    _, reason = failure_reason(_spring(b"x" * 500))
    assert reason == "PaymentDeclinedException: " + "x" * 160


def test_a_phone_number_is_seven_to_fifteen_digits():
    assert mask.mask_text("call 555 1234 now") == "call *** now"                        # 7 digits
    assert mask.mask_text("call +49 1512 3456 78901 now") == "call *** now"             # 15 digits
    assert mask.mask_text("call +49 1512 3456 789012 now") == "call +49 1512 3456 789012 now"  # 16: not a phone


def test_a_mapping_that_is_not_a_plain_dict_is_masked_by_the_same_rules():
    from collections import OrderedDict
    body = OrderedDict(order="A-1", name="Ann Lee", city="Zürich")
    assert mask.masked_payload(body) == '{"order":"A-1","name":"***","city":"Zürich"}'
    assert mask.masked_payload({"o": OrderedDict(order="A-1", name="Ann Lee")}) == \
        '{"o":{"order":"A-1","name":"***"}}'


def test_preview_of_json_is_json_text_with_non_ascii_kept():
    payload = '{"email":"ann@example.com","n":1,"city":"Zürich"}'.encode()
    assert mask.preview(payload) == '{"email": "***", "n": 1, "city": "Zürich"}'


def test_preview_of_nothing_binary_and_long_text():
    assert mask.preview(b"") == ""
    assert mask.preview(None) == ""
    assert mask.preview(b"\xff" * 40) == "<40 bytes, not UTF-8: 0xffffffffffffffffffffffffffffffff…>"
    assert mask.preview(b"x" * 300) == "x" * 300                  # PREVIEW_CHARS exactly: whole
    assert mask.preview(b"y" * 301) == "y" * 299 + "…"            # longer: cut to 300 with the ellipsis


def test_an_escaped_key_of_json_in_text_is_read_as_the_key_it_spells():
    assert mask.mask_text('{"e\\u006dail": "ann", "id": 7}') == '{"e\\u006dail": "***", "id": 7}'


def test_a_credential_with_only_a_colon_or_only_a_space_in_a_payload_value():
    assert mask.masked_payload({"note": "api_key:8f1e2d3c"}) == '{"note":"api_key:***"}'
    assert mask.masked_payload({"note": "Bearer eyJhbGciOi.J9x"}) == '{"note":"Bearer ***"}'


def test_an_object_or_array_under_a_personal_key_in_json_text_is_masked_leaf_by_leaf():
    text = 'rejected {"id": 7, "address": {"line": "Main 1", "city": "Berlin"}, "phones": ["555", 777], "n": 2}'
    assert mask.mask_text(text) == \
        'rejected {"id": 7, "address": {"line": "***", "city": "***"}, "phones": ["***", "***"], "n": 2}'
    nested = '{"address": {"geo": {"lat": 52.5}, "line": "Main 1"}, "n": 2}'
    assert mask.mask_text(nested) == '{"address": {"geo": {"lat": "***"}, "line": "***"}, "n": 2}'


def test_a_personal_key_with_no_value_in_broken_json_text_is_left_as_it_is():
    assert mask.mask_text('{"email": , "id": 1}') == '{"email": , "id": 1}'
    assert mask.mask_text('{"email": ') == '{"email": '


@pytest.mark.parametrize("text, shown", [
    # written with dots: groups of four, the last one 1 to 4 digits
    ("card 4222.2222.2222.2 declined", "card **** declined"),          # 13 digits, a last group of one
    ("card 4111.1111.11111.111 declined", "card 4111.1111.11111.111 declined"),  # a middle group of five
    ("card 4111.1111.1111.11113 declined", "card 4111.1111.1111.11113 declined"),  # a last group of five
    # written with spaces or dashes: groups of three to six digits
    ("card 4111 111 111 111 111 declined", "card **** declined"),      # groups of three
    ("card 4111-111-111-111-111 declined", "card **** declined"),
    ("card 4111111 11111 1111 declined", "card 4111111 11111 1111 declined"),  # a group of seven
    ("card 411111 1111111111 declined", "card 411111 1111111111 declined"),  # a group of ten
    ("card 41111111 11111111 declined", "card 41111111 11111111 declined"),  # two groups of eight
    # the number may be followed by a separator: it is kept after the mask
    ("ref 4111-1111-1111-1111-A", "ref ****-A"),
    ("ref 4111.1111.1111.1111.A", "ref ****.A"),
])
def test_how_a_card_number_is_written_decides(text, shown):
    assert mask.mask_text(text) == shown


def test_a_reason_reads_at_most_300_characters_of_the_message():
    # the message is read to its first 300 characters (299 and "…"), then its whitespace is
    # collapsed: with a long run of blanks, what was read shows after the collapse
    message = b"card declined" + b" " * 277 + b"quota wxyz tuvw rstu"
    assert len(message) == 310
    _, reason = failure_reason(_spring(message))
    assert reason == "PaymentDeclinedException: card declined quota wxy…"
    trace = (b"org.springframework.kafka.listener.ListenerExecutionFailedException: Listener failed\n"
             b"Caused by: com.shop.PaymentDeclinedException: " + message + b"\n\tat com.shop.Pay.run(Pay.java:1)\n")
    headers = {"kafka_dlt-exception-fqcn": b"org.springframework.kafka.listener.ListenerExecutionFailedException",
               "kafka_dlt-exception-stacktrace": trace}
    assert failure_reason(headers) == ("com.shop.PaymentDeclinedException",
                                       "PaymentDeclinedException: card declined quota wxy…")


@pytest.mark.parametrize("key", ["groupName_contactName", "hostname_username", "fileNameOrFullName"])
def test_a_person_name_after_a_thing_name_in_one_key_is_still_personal(key):
    assert mask.is_personal_key(key)
    assert json.loads(mask.headers_json({key: b"Ann Lee"})) == {key: "***"}


def test_header_values_have_credentials_masked_whatever_separates_them():
    assert json.loads(mask.headers_json({"x-note": b"token:abc12345"})) == {"x-note": "token:***"}
    assert json.loads(mask.headers_json({"x-note": b"Bearer\teyJhbGciOi.J9x"})) == {"x-note": "Bearer\t***"}


def test_headers_show_at_most_fifty_and_never_the_payload_fields():
    headers = {f"x-h{i:02d}": b"v" for i in range(60)}
    shown = json.loads(mask.headers_json(headers))
    assert list(shown) == [f"x-h{i:02d}" for i in range(50)]
    assert json.loads(mask.headers_json({"envelope": b'{"a": 1}', "payload": b"p", "x-id": b"7"})) == {"x-id": "7"}


def test_a_binary_header_value_is_a_short_hex_prefix():
    assert json.loads(mask.headers_json({"x-bin": b"\xff\x00abc"})) == {"x-bin": "0xff00616263"}
    assert json.loads(mask.headers_json({"x-bin": b"\xfe" * 100})) == {"x-bin": "0x" + "fe" * 32}


def test_header_names_are_cut_at_100_characters_and_values_at_200():
    shown = json.loads(mask.headers_json({"k" * 100: b"v" * 200, "n" * 101: b"w" * 201}))
    assert shown == {"k" * 100: "v" * 200, "n" * 99 + "…": "w" * 199 + "…"}
