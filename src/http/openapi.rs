//! The OpenAPI 3.1 document, generated from the route table and the types' JSON schemas, so it
//! cannot drift from the code.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::Access;

/// Makes the schema of a request or response type.
pub(crate) type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

pub fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// The `{name}` placeholders of a path.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// The server URL of the checked-in document, docs/openapi.json (a running appliance serves its
/// own at /api/v1/openapi.json, with its public URL).
#[cfg(test)]
const CHECKED_IN_SERVER: &str = "http://127.0.0.1:5240";

/// The document for clients to reach the API at `server_url`.
pub fn document(server_url: &str) -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut g = settings.into_generator();
    let mut paths: Map<String, Value> = Map::new();
    for route in super::api::ROUTES {
        let mut op = Map::new();
        op.insert("summary".into(), json!(route.summary));
        op.insert(
            "operationId".into(),
            json!(format!(
                "{}{}",
                route.method.as_str().to_lowercase(),
                route.path.replace(['/', '{', '}', '.'], "_")
            )),
        );
        let mut params: Vec<Value> = path_params(route.path)
            .into_iter()
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if let Some(q) = route.query {
            // A query type is an object: each property becomes a query parameter.
            let s = q(&mut g);
            let resolved = resolve(&g, s.as_value());
            if let Some(props) = resolved.get("properties").and_then(|p| p.as_object()) {
                for (name, schema) in props {
                    params.push(
                        json!({"name": name, "in": "query", "required": false, "schema": schema}),
                    );
                }
            }
        }
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(r) = route.request {
            let s = r(&mut g);
            // JsonBody reads an empty body as `{}`: a body is required only when `{}` is not
            // a valid one.
            let required = resolve(&g, s.as_value())
                .get("required")
                .and_then(Value::as_array)
                .is_some_and(|r| !r.is_empty());
            op.insert(
                "requestBody".into(),
                json!({"required": required, "content": {"application/json": {"schema": s}}}),
            );
        }
        let mut ok = json!({"description": "success"});
        if let Some(r) = route.response {
            let s = r(&mut g);
            ok["content"] = json!({"application/json": {"schema": s}});
        }
        let mut responses = Map::new();
        responses.insert(route.success.to_string(), ok);
        let err = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        responses.insert("400".into(), err.clone());
        if route.access != Access::Anonymous {
            responses.insert("401".into(), err.clone());
            responses.insert("403".into(), err.clone());
            op.insert("security".into(), json!([{"bearer": []}]));
        } else {
            // Login answers a wrong password with 401, a caller the login gate slows with 429
            // (and Retry-After); one past the full hashing queue gets 503, as below.
            if route.path == "/api/v1/auth/login" {
                responses.insert("401".into(), err.clone());
                responses.insert("429".into(), err.clone());
            }
            op.insert("security".into(), json!([]));
        }
        responses.insert("404".into(), err.clone());
        responses.insert("409".into(), err.clone());
        // Any operation may meet a failed state store (503); a write may meet a full disk,
        // the store's or the image cache's (507, with what to delete).
        responses.insert("503".into(), err.clone());
        if route.method != axum::http::Method::GET {
            responses.insert("507".into(), err);
        }
        op.insert("responses".into(), Value::Object(responses));
        op.insert(
            "x-rackbox-access".into(),
            json!(match route.access {
                Access::Anonymous => "anonymous",
                Access::User => "user",
                Access::Admin => "admin",
            }),
        );
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method.as_str().to_lowercase()] = Value::Object(op);
    }
    let mut schemas = g.take_definitions(true);
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "machine-readable code"},
                "message": {"type": "string", "description": "what went wrong, for people"},
                "status": {"type": "string", "description": "the machine's current status (409 on a refused action)"}
            }
        }),
    );
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "rackbox API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The native REST API of rackbox, a bare-metal provisioning appliance."
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    });
    bound_integers(&mut doc);
    doc
}

/// Adds the largest value to every unsigned integer schema: schemars says only `minimum: 0`
/// and the format, and a larger number does not fit the Rust type (a 400).
fn bound_integers(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let max = match map.get("format").and_then(Value::as_str) {
                Some("uint8") => Some(u64::from(u8::MAX)),
                Some("uint16") => Some(u64::from(u16::MAX)),
                Some("uint32") => Some(u64::from(u32::MAX)),
                Some("uint64" | "uint") => Some(u64::MAX),
                _ => None,
            };
            if let Some(max) = max
                && !map.contains_key("maximum")
            {
                map.insert("maximum".into(), json!(max));
            }
            map.values_mut().for_each(bound_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// Follows a `$ref` into the generator's definitions.
fn resolve(g: &SchemaGenerator, s: &Value) -> Value {
    if let Some(r) = s.get("$ref").and_then(|r| r.as_str())
        && let Some(name) = r.rsplit('/').next()
        && let Some(def) = g.definitions().get(name)
    {
        return def.clone();
    }
    s.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
        &doc["paths"][path][method]
    }

    /// docs/openapi.json is the document the code makes, so every change to the API shows as a
    /// diff of that file in review. `RACKBOX_BLESS=1` rewrites it.
    #[test]
    fn the_checked_in_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let made = serde_json::to_string_pretty(&document(CHECKED_IN_SERVER))
            .expect("a JSON value serializes")
            + "\n";
        if std::env::var_os("RACKBOX_BLESS").is_some() {
            std::fs::write(&path, &made).expect("docs/openapi.json is writable");
            return;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some((n, (old, new))) = checked_in
            .lines()
            .chain(std::iter::repeat(""))
            .zip(made.lines().chain(std::iter::repeat("")))
            .take(checked_in.lines().count().max(made.lines().count()))
            .enumerate()
            .find(|(_, (old, new))| old != new)
        {
            panic!(
                "docs/openapi.json is not the document the code makes; line {}:\n  file: {old}\n  code: {new}\n\
                 If the API change is meant, run `RACKBOX_BLESS=1 cargo test --lib \
                 the_checked_in_document_is_current` and commit the file.",
                n + 1
            );
        }
    }

    /// The precision issue 13 asked for: what the server does, the document says.
    #[test]
    fn the_document_says_what_the_server_does() {
        let doc = document("http://127.0.0.1:5240");
        // POST /api/v1/tokens takes an empty body (every field has a default); a new user
        // needs one.
        assert_eq!(
            op(&doc, "post", "/api/v1/tokens")["requestBody"]["required"],
            false
        );
        assert_eq!(
            op(&doc, "post", "/api/v1/users")["requestBody"]["required"],
            true
        );
        // Login's wrong password and its gate.
        let login = &op(&doc, "post", "/api/v1/auth/login")["responses"];
        assert!(
            login.get("401").is_some() && login.get("429").is_some(),
            "{login}"
        );
        // Enums and patterns, not bare strings.
        let text = doc.to_string();
        for needle in [
            "\"failed_testing\"",
            "\"raw.zst\"",
            "\"bootloader\"",
            "\"pattern\"",
        ] {
            assert!(text.contains(needle), "the document lacks {needle}");
        }
        // Unsigned integers carry their largest value.
        assert!(text.contains(&format!("\"maximum\":{}", u32::MAX)));
    }
}
