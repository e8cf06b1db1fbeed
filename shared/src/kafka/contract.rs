//! The event contract as an AsyncAPI 3 document (docs/asyncapi.yaml),
//! generated from the event types themselves ([`super::events`], with
//! `schemars`), so it cannot say something the code does not do: the
//! topic, its key, its headers, and a JSON Schema per event type.
//! `minishop-ops asyncapi` prints it; a test fails when the file is not
//! what this module generates, and another validates every event the saga
//! tests produce against it. How a new version of an event is added
//! without breaking consumers is in docs/contracts.md, "Evolving the
//! events".

use serde_json::{Map, Value, json};

use super::events::{EVENT_TYPES, Event, producer_of};

/// The contract's version: minor for added fields or types, major for a
/// change old consumers would misread (docs/contracts.md).
pub const VERSION: &str = "2.0.0";

/// Who receives each event type (its consumer groups); who sends it is
/// [`producer_of`].
const RECEIVERS: &[(&str, &[&str])] = &[
    (
        "order_created",
        &["payment-service", "notification-service"],
    ),
    (
        "payment_success",
        &["order-service", "notification-service"],
    ),
    ("payment_failed", &["order-service", "notification-service"]),
    ("order_confirmed", &["notification-service"]),
    (
        "order_cancelled",
        &["payment-service", "notification-service"],
    ),
    (
        "payment_refunded",
        &["order-service", "notification-service"],
    ),
];

/// (event type, its sender, its receivers), in [`RECEIVERS`]' order.
fn roles() -> impl Iterator<Item = (&'static str, &'static str, &'static [&'static str])> {
    RECEIVERS.iter().map(|(t, to)| {
        let from = producer_of(t).map_or("", |p| p.as_str());
        (*t, from, *to)
    })
}

/// The services on the topic, in the order the document lists them.
const SERVICES: &[&str] = &["order-service", "payment-service", "notification-service"];

/// The JSON Schema of each event type's message, by `event_type`, and the
/// schemas they refer to (`#/components/schemas/...`), from the Rust types.
pub fn schemas() -> (Vec<(String, Value)>, Map<String, Value>) {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let root = generator.into_root_schema_for::<Event>().to_value();
    let rewrite = |v: &Value| rewrite_refs(v.clone());
    let envelope = root["properties"].as_object().cloned().unwrap_or_default();
    let envelope_required = root["required"].as_array().cloned().unwrap_or_default();
    let mut messages = Vec::new();
    for variant in root["oneOf"].as_array().into_iter().flatten() {
        let Some(event_type) = variant["properties"]["event_type"]["const"].as_str() else {
            continue;
        };
        let mut properties = envelope.clone();
        for (name, schema) in variant["properties"].as_object().into_iter().flatten() {
            properties.insert(name.clone(), schema.clone());
        }
        let mut required = envelope_required.clone();
        required.extend(variant["required"].as_array().cloned().unwrap_or_default());
        let mut schema = json!({
            "type": "object",
            "properties": properties,
            "required": required,
        });
        if let Some(description) = variant.get("description") {
            schema["description"] = description.clone();
        }
        messages.push((event_type.to_string(), rewrite(&schema)));
    }
    let definitions = root["definitions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, schema)| (name.clone(), rewrite(schema)))
        .collect();
    (messages, definitions)
}

/// `#/definitions/X` (schemars' draft 7) is `#/components/schemas/X` in
/// the document.
fn rewrite_refs(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => {
                            Value::String(r.replace("#/definitions/", "#/components/schemas/"))
                        }
                        (_, v) => rewrite_refs(v),
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(rewrite_refs).collect()),
        other => other,
    }
}

/// The AsyncAPI 3.0 document of the topic `topic`.
pub fn asyncapi(topic: &str) -> Value {
    let (messages, mut component_schemas) = schemas();
    let mut component_messages = Map::new();
    let mut channel_messages = Map::new();
    for (event_type, schema) in messages {
        let name = format!("{event_type}_payload");
        component_schemas.insert(name.clone(), schema);
        let description = roles()
            .find(|(t, _, _)| *t == event_type)
            .map(|(_, from, to)| format!("Sent by {from}; read by {}.", to.join(", ")))
            .unwrap_or_default();
        component_messages.insert(
            event_type.clone(),
            json!({
                "name": event_type,
                "title": event_type,
                "summary": description,
                "contentType": "application/json",
                "headers": {"$ref": "#/components/schemas/headers"},
                "payload": {"$ref": format!("#/components/schemas/{name}")},
                "correlationId": {"$ref": "#/components/correlationIds/event_id"},
                "bindings": {"kafka": {
                    "key": {"type": "string", "pattern": "^[1-9][0-9]*$",
                            "description": "The order id: every event of one order is on one partition, in order."},
                    "bindingVersion": "0.5.0",
                }},
            }),
        );
        channel_messages.insert(
            event_type.clone(),
            json!({"$ref": format!("#/components/messages/{event_type}")}),
        );
    }
    component_schemas.insert("headers".into(), headers_schema());
    let mut operations = Map::new();
    for service in SERVICES {
        for (action, verb) in [("send", "sends"), ("receive", "receives")] {
            let types: Vec<&str> = roles()
                .filter(|(_, from, to)| match action {
                    "send" => from == service,
                    _ => to.contains(service),
                })
                .map(|(t, _, _)| t)
                .collect();
            if types.is_empty() {
                continue;
            }
            let id = format!("{}_{action}", service.replace('-', "_"));
            let mut operation = json!({
                "action": action,
                "channel": {"$ref": "#/channels/events"},
                "summary": format!("{service} {verb} {}.", types.join(", ")),
                "messages": types.iter()
                    .map(|t| json!({"$ref": format!("#/channels/events/messages/{t}")}))
                    .collect::<Vec<_>>(),
            });
            if action == "receive" {
                operation["bindings"] = json!({"kafka": {
                    "groupId": {"type": "string", "const": service,
                                "description": "KAFKA_GROUP_PREFIX is put in front of it."},
                    "bindingVersion": "0.5.0",
                }});
            }
            operations.insert(id, operation);
        }
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "minishop order saga events",
            "version": VERSION,
            "description": "The events of minishop's order saga on one Kafka topic: \
                a JSON envelope (event_id, occurred_at, order_id, user_id, event_type) \
                with the type's fields flat beside it, keyed by order id, with the \
                event_type, event_id and traceparent headers, and signed by the one \
                service that produces its type (the signature_key_id and signature \
                headers; docs/security.md, \"Event signatures\"). Consumers ignore fields \
                they do not know and skip event types they do not know \
                (docs/contracts.md, \"Evolving the events\"). Generated from the Rust \
                event types by `minishop-ops asyncapi`; do not edit by hand.",
            "license": {"name": "MIT OR Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "`make up`'s broker; it asks for a SASL/SCRAM-SHA-512 login (scripts/keys.sh).",
            },
        },
        "channels": {
            "events": {
                "address": topic,
                "title": "The saga's topic",
                "description": format!(
                    "Every saga event. Poison messages go to `{topic}.dlq` with their error in headers."
                ),
                "messages": channel_messages,
                "bindings": {"kafka": {"topic": topic, "bindingVersion": "0.5.0"}},
            },
        },
        "operations": operations,
        "components": {
            "schemas": component_schemas,
            "messages": component_messages,
            "correlationIds": {
                "event_id": {
                    "description": "The event's id, also in the `event_id` header: consumers' inboxes apply an event once.",
                    "location": "$message.payload#/event_id",
                },
            },
        },
    })
}

/// The headers every event carries (the relay sets them from the outbox row).
fn headers_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "event_type": {"type": "string", "enum": EVENT_TYPES,
                           "description": "The payload's event_type, so a consumer can route without parsing."},
            "event_id": {"type": "string", "format": "uuid",
                         "description": "The payload's event_id."},
            "traceparent": {"type": "string",
                            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                            "description": "W3C trace context of the transaction that wrote the event; absent when it was written outside a trace."},
            "signature_key_id": {"type": "string", "pattern": "^[0-9a-f]{16}$",
                            "description": "Which key signed the event: the first 8 bytes of its Ed25519 public key, in hex. Consumers know each key's service from their keyring (EVENT_KEYS)."},
            "signature": {"type": "string", "contentEncoding": "base64",
                            "description": "Ed25519 signature, by the producing service's key, of the bytes \"minishop-event-v1\\n\" followed by the payload as sent. A consumer refuses (dead-letters, counts as refused) an event without one, with one it cannot verify, or signed by a service that does not produce its type."},
        },
        "required": ["event_type", "event_id", "signature_key_id", "signature"],
    })
}

/// `value` as YAML: block style, every string quoted (a JSON string is a
/// YAML double-quoted scalar), so no text can be read as another type.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_yaml(value, 0, &mut out);
    out
}

fn write_yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                out.push_str(&pad);
                out.push_str(&yaml_key(key));
                out.push(':');
                write_nested(v, indent, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // The item's first key on the dash's line.
                        let mut inner = String::new();
                        write_yaml(item, indent + 2, &mut inner);
                        out.push(' ');
                        out.push_str(&inner[indent + 2..]);
                    }
                    _ => write_nested(item, indent, out),
                }
            }
        }
        scalar => {
            out.push_str(&pad);
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

/// After `key:` or `-`: a scalar on the same line, a collection below.
fn write_nested(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_yaml(value, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_yaml(value, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        // JSON's escapes are YAML's; `to_string` of a Value does not fail.
        other => other.to_string(),
    }
}

/// A key as it is when it is plain (letters, digits, `_`, `$`, `.`, `-`,
/// not a word YAML reads as a boolean or null), quoted otherwise.
fn yaml_key(key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_$.-".contains(c))
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_a_message_schema_with_the_envelope() {
        let (messages, _) = schemas();
        let types: Vec<&str> = messages.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(types, EVENT_TYPES);
        for (event_type, schema) in &messages {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            for field in [
                "event_id",
                "occurred_at",
                "order_id",
                "user_id",
                "event_type",
            ] {
                assert!(required.contains(&field), "{event_type}: {schema:#}");
            }
            assert_eq!(schema["properties"]["event_type"]["const"], *event_type);
        }
        assert!(roles().map(|(t, _, _)| t).eq(EVENT_TYPES.iter().copied()));
        assert!(roles().all(|(_, from, _)| !from.is_empty()));
        // The headers the document names are the ones the relay sets.
        let headers = headers_schema();
        for name in [
            super::super::signing::KEY_ID_HEADER,
            super::super::signing::SIGNATURE_HEADER,
        ] {
            assert!(headers["properties"].get(name).is_some(), "{name}");
        }
    }

    /// The document in the repository is what the types generate; the
    /// event tests validate against the generated one, so this is also
    /// what makes them validate against the file.
    #[test]
    fn docs_asyncapi_yaml_is_what_the_event_types_generate() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/asyncapi.yaml");
        let file = std::fs::read_to_string(path).unwrap_or_default();
        let generated = to_yaml(&asyncapi("order_events"));
        assert!(
            file == generated,
            "docs/asyncapi.yaml is not what the event types generate: run `make asyncapi` \
             (minishop-ops --topic order_events asyncapi > docs/asyncapi.yaml) and commit it"
        );
    }

    #[test]
    fn a_field_the_document_does_not_name_is_allowed_as_consumers_ignore_it() {
        let (messages, _) = schemas();
        for (event_type, schema) in &messages {
            assert_ne!(
                schema.get("additionalProperties"),
                Some(&Value::Bool(false)),
                "{event_type}"
            );
        }
    }

    #[test]
    fn yaml_quotes_every_string_and_nests_by_indentation() {
        let value = json!({"a": {"b": [1, "no", {"c": true, "d": []}], "on": null}, "$ref": "#/x"});
        assert_eq!(
            to_yaml(&value),
            "$ref: \"#/x\"\na:\n  b:\n    - 1\n    - \"no\"\n    - c: true\n      d: []\n  \"on\": null\n"
        );
    }
}
