use super::*;

fn host(name: &str, route: &str, split: &[(&str, u32)]) -> pb::VirtualHost {
    pb::VirtualHost {
        name: name.to_owned(),
        domains: vec![name.to_owned()],
        routes: vec![pb::Route {
            name: route.to_owned(),
            destinations: split
                .iter()
                .map(|(cluster, weight)| pb::WeightedCluster {
                    cluster: (*cluster).to_owned(),
                    weight: *weight,
                })
                .collect(),
            ..Default::default()
        }],
        ports: Vec::new(),
    }
}

fn table(hosts: &[pb::VirtualHost], previous: Option<&RouteTable<String>>) -> RouteTable<String> {
    RouteTable::compile_after(hosts, previous, |name| Some(name.to_owned())).expect("compiles")
}

fn picks(table: &RouteTable<String>, host: &str, n: usize) -> Vec<String> {
    let vh = table.virtual_host(host).expect("host");
    (0..n)
        .map(|_| vh.routes[0].pick_destination().clone())
        .collect()
}

fn count(picks: &[String], cluster: &str) -> usize {
    picks.iter().filter(|p| *p == cluster).count()
}

const CANARY: &[(&str, u32)] = &[("v1|reviews", 90), ("v2|reviews", 10)];

#[test]
fn a_new_config_that_splits_the_same_way_keeps_the_split_exact_wherever_it_lands() {
    // Whatever point of the 10-request cycle the new config arrives at,
    // the 1,000 requests around it split exactly 900/100.
    for before in 0..10 {
        let old = table(&[host("reviews", "canary", CANARY)], None);
        let mut seen = picks(&old, "reviews", before);
        // Something else changed (another service appeared).
        let new = table(
            &[
                host("ratings", "default", &[("ratings", 100)]),
                host("reviews", "canary", CANARY),
            ],
            Some(&old),
        );
        seen.extend(picks(&new, "reviews", 1000 - before));
        assert_eq!(
            (count(&seen, "v1|reviews"), count(&seen, "v2|reviews")),
            (900, 100),
            "new config after {before} requests"
        );
    }
}

#[test]
fn a_route_that_splits_differently_starts_its_sequence_afresh() {
    let old = table(&[host("reviews", "canary", CANARY)], None);
    picks(&old, "reviews", 3);
    let fresh = table(&[host("reviews", "canary", CANARY)], None);
    let first_ten = picks(&fresh, "reviews", 10);
    for (changed, why) in [
        (
            host(
                "reviews",
                "canary",
                &[("v1|reviews", 80), ("v2|reviews", 20)],
            ),
            "other weights",
        ),
        (
            host(
                "reviews",
                "canary",
                &[("v1|reviews", 90), ("v3|reviews", 10)],
            ),
            "another cluster",
        ),
        (host("reviews", "renamed", CANARY), "another route name"),
    ] {
        let old = table(&[host("reviews", "canary", CANARY)], None);
        picks(&old, "reviews", 3);
        let new = table(std::slice::from_ref(&changed), Some(&old));
        let expected = if why == "another route name" {
            first_ten.clone()
        } else {
            picks(&table(std::slice::from_ref(&changed), None), "reviews", 10)
        };
        assert_eq!(picks(&new, "reviews", 10), expected, "{why}");
    }
}
