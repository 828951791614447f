//! The OpenAPI 3.1 document, generated from the route table and the types' JSON schemas, so it
//! cannot drift from the code.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::Access;

/// Makes the schema of a request or response type.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

pub fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// The `{name}` placeholders of a path.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

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
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": s}}}),
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
            op.insert("security".into(), json!([]));
        }
        responses.insert("404".into(), err.clone());
        responses.insert("409".into(), err);
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
    json!({
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
    })
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
