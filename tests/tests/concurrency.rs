//! Issue 7, item 5: concurrent requests keep the state consistent. Uniqueness is a SQLite constraint,
//! so races end in 409s, never in two boxes or two snapshots with one name.

use std::collections::BTreeMap;

use forkr_tests::Server;
use serde_json::{Value, json};

fn post(s: &Server, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}{path}", s.url))
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = (0..n).map(|i| scope.spawn(move || f(i))).collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    })
}

#[test]
fn fifty_parallel_creates_of_distinct_boxes_all_succeed() {
    let s = Server::start();
    let results = parallel(50, |i| post(&s, "/v1/projects/load/boxes", json!({"name": format!("b{i}")})));
    for (i, (status, body)) in results.iter().enumerate() {
        assert_eq!(*status, 201, "create b{i}: {body}");
    }
    let list: Value = serde_json::from_str(&s.ok(&["list", "-p", "load", "--json"])).unwrap();
    let running = list.as_array().unwrap().iter().filter(|b| b["status"] == "running").count();
    assert_eq!(running, 50);
}

#[test]
fn twenty_parallel_creates_of_one_name_give_one_box() {
    let s = Server::start();
    let results = parallel(20, |_| post(&s, "/v1/projects/race/boxes", json!({"name": "same"})));
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for (status, body) in &results {
        *by_status.entry(*status).or_default() += 1;
        if *status == 409 {
            assert_eq!(body["error"]["code"], "conflict", "{body}");
        }
    }
    assert_eq!(by_status, BTreeMap::from([(201, 1), (409, 19)]), "{results:?}");
    assert_eq!(s.ok(&["exec", "-p", "race", "same", "--", "echo", "ok"]), "ok\n");
}

#[test]
fn parallel_snapshots_never_collide() {
    let s = Server::start();
    s.ok(&["create", "snappy"]);
    let results = parallel(12, |_| post(&s, "/v1/projects/default/boxes/snappy/snapshots", json!({})));
    let mut names: Vec<String> = results
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 201, "{body}");
            body["name"].as_str().unwrap().to_owned()
        })
        .collect();
    names.sort_by_key(|n| n[1..].parse::<u32>().unwrap());
    let expected: Vec<String> = (0..12).map(|i| format!("v{i}")).collect();
    assert_eq!(names, expected);
}
