//! The README's least-privilege IAM policy lists exactly the CodePipeline operations the code
//! calls: an operation added to `src/aws/` without the policy would fail with
//! AccessDenied on every bastion that copied the README, and a stale action grants too much.

use std::collections::BTreeSet;

const README: &str = include_str!("../../README.md");

/// Every `.rs` file under `src/aws/` (the only module that touches the SDK), concatenated.
fn aws_sources() -> String {
    crate::support::sources::rust_files("src/aws")
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read source"))
        .collect::<Vec<_>>()
        .join("\n;\n")
}

/// SDK operations called in `src`: in each statement that ends in `.send()`, the first
/// method called with no arguments (`client.get_pipeline_state().name(..).send()`), as its
/// API name (`GetPipelineState`).
fn operations_called(src: &str) -> BTreeSet<String> {
    let code: String = src
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut ops = BTreeSet::new();
    let mut from = 0;
    while let Some(at) = code[from..].find(".send()") {
        let send = from + at;
        let start = code[..send].rfind([';', '{', '}']).map_or(0, |i| i + 1);
        let statement = &code[start..send];
        let op = statement
            .match_indices("()")
            .filter_map(|(i, _)| {
                let before = &statement[..i];
                let name_start = before
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(0, |j| j + 1);
                let name = &before[name_start..];
                (before[..name_start].trim_end().ends_with('.') && !name.is_empty()).then_some(name)
            })
            .next()
            .unwrap_or_else(|| panic!("no operation before .send() in: {statement}"));
        ops.insert(pascal(op));
        from = send + 1;
    }
    ops
}

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// `"codepipeline:Action"` strings anywhere in the README.
fn policy_actions(readme: &str) -> BTreeSet<String> {
    readme
        .match_indices("\"codepipeline:")
        .map(|(i, m)| {
            let rest = &readme[i + m.len()..];
            rest[..rest.find('"').expect("closing quote")].to_owned()
        })
        .collect()
}

#[test]
fn readme_policy_lists_exactly_the_operations_the_code_calls() {
    let called = operations_called(&aws_sources());
    assert!(
        called.contains("GetPipelineState"),
        "the scan found no GetPipelineState call; is it still working? {called:?}"
    );
    let listed = policy_actions(README);
    assert_eq!(
        listed, called,
        "README IAM policy actions (left) differ from the CodePipeline operations src/aws/ calls (right)"
    );
}

#[test]
fn the_scan_finds_chained_calls() {
    let src = r#"
        let state = self
            .client(target)
            .get_pipeline_state() // the state
            .name(&target.pipeline)
            .send()
            .await?;
        let x = client.list_pipelines().send().await;
    "#;
    let ops: Vec<String> = operations_called(src).into_iter().collect();
    assert_eq!(ops, ["GetPipelineState", "ListPipelines"]);
    assert_eq!(
        policy_actions(r#"["codepipeline:GetPipeline", "codepipeline:GetPipelineState"]"#)
            .into_iter()
            .collect::<Vec<_>>(),
        ["GetPipeline", "GetPipelineState"]
    );
}

/// The README's policy document: the JSON block that grants `PutApprovalResult`.
fn readme_policy() -> serde_json::Value {
    let at = README
        .find("\"codepipeline:PutApprovalResult\"")
        .expect("the README's policy grants PutApprovalResult");
    let start = README[..at].rfind("```json").expect("a ```json block") + "```json".len();
    let end = start + README[start..].find("```").expect("the block ends");
    serde_json::from_str(&README[start..end]).expect("the README's policy is JSON")
}

/// An approval action's ARN: `arn:aws:codepipeline:REGION:ACCOUNT:PIPELINE/STAGE/ACTION`,
/// with no wildcard in the pipeline, stage or action.
fn is_action_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", "aws", "codepipeline", region, account, resource] = parts[..] else {
        return false;
    };
    let path: Vec<&str> = resource.split('/').collect();
    !region.is_empty()
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && path.len() == 3
        && path.iter().all(|p| !p.is_empty() && !p.contains('*'))
}

#[test]
fn put_approval_result_is_granted_on_approval_actions_only() {
    let policy = readme_policy();
    let statements = policy["Statement"].as_array().expect("Statement is a list");
    let as_list = |v: &serde_json::Value| -> Vec<String> {
        match v {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().expect("strings").to_owned())
                .collect(),
            _ => panic!("expected a string or a list: {v}"),
        }
    };
    let granting: Vec<&serde_json::Value> = statements
        .iter()
        .filter(|s| as_list(&s["Action"]).contains(&"codepipeline:PutApprovalResult".to_owned()))
        .collect();
    assert_eq!(granting.len(), 1, "one statement grants PutApprovalResult");
    let statement = granting[0];
    assert_eq!(
        as_list(&statement["Action"]),
        ["codepipeline:PutApprovalResult"],
        "the approving statement grants nothing else"
    );
    let resources = as_list(&statement["Resource"]);
    assert!(!resources.is_empty());
    for arn in &resources {
        assert!(is_action_arn(arn), "not an approval action's ARN: {arn}");
    }
    assert!(!is_action_arn("arn:aws:codepipeline:*:123456789012:*"));
    assert!(!is_action_arn(
        "arn:aws:codepipeline:eu-west-1:123456789012:web-app"
    ));
    assert!(!is_action_arn(
        "arn:aws:codepipeline:eu-west-1:123456789012:web-app/*/Approve"
    ));
}
