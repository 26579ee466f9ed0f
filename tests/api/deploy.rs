//! The deployment files, checked for structure: this machine has no Docker
//! engine to run them.

use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(node: &Yaml) -> Vec<String> {
    node.as_vec()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_runs_a_persistent_redis_and_the_gateway_with_healthchecks() {
    let docs = YamlLoader::load_from_str(&repo_file("docker-compose.yml")).expect("valid YAML");
    let services = &docs[0]["services"];
    let redis = &services["redis"];
    let gateway = &services["gateway"];
    assert!(
        !redis.is_badvalue() && !gateway.is_badvalue(),
        "both services exist"
    );

    let command = strings(&redis["command"]).join(" ");
    assert!(command.contains("--appendonly yes"), "AOF is on: {command}");
    assert!(
        command.contains("--maxmemory-policy noeviction"),
        "Redis never evicts a challenge or a token: {command}"
    );
    assert!(
        command.contains("--requirepass ${REDIS_PASSWORD:?"),
        "Redis demands a password: {command}"
    );
    for service in [redis, gateway] {
        assert!(
            !strings(&service["healthcheck"]["test"]).is_empty(),
            "a healthcheck"
        );
    }

    assert_eq!(gateway["build"].as_str(), Some("."));
    let keys = gateway["environment"]["TWOFA_API_KEYS"]
        .as_str()
        .unwrap_or_default();
    assert!(
        keys.starts_with("${TWOFA_API_KEYS:?"),
        "the gateway listens beyond loopback, so compose must demand keys: {keys}"
    );
    let url = gateway["environment"]["REDIS_URL"]
        .as_str()
        .unwrap_or_default();
    assert!(
        url.starts_with("redis://:${REDIS_PASSWORD") && url.ends_with("@redis:6379"),
        "the gateway uses the password: {url}"
    );
    assert_eq!(
        gateway["depends_on"]["redis"]["condition"].as_str(),
        Some("service_healthy")
    );
    let probe = strings(&gateway["healthcheck"]["test"]).join(" ");
    assert!(
        probe.contains("/readyz"),
        "the gateway's healthcheck asks /readyz: {probe}"
    );
}

#[test]
fn the_image_is_built_in_two_stages_and_runs_unprivileged() {
    let dockerfile = repo_file("Dockerfile");
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert_eq!(stages, 2, "a build stage and a slim runtime stage");
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert_ne!(user.trim(), "root");
}
