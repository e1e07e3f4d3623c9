"""Every class and trigger of the package parses with the real Apex parser, declares what its file
name says, and keeps queries and DML out of loops."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.plugin.apex import (
    PARSER_SCRIPT,
    PLUGIN,
    SOURCE,
    ApexClass,
    Node,
    ParseReport,
    method_calls,
    node_executable,
    parse_apex,
)

PARSER_PACKAGE_NAME = "@apexdevtools/apex-parser"
LOOPS = ("ForStatement", "WhileStatement", "DoWhileStatement")
DML_STATEMENTS = (
    "InsertStatement",
    "UpdateStatement",
    "DeleteStatement",
    "UndeleteStatement",
    "UpsertStatement",
    "MergeStatement",
)
QUERIES = ("SoqlPrimary", "SoslPrimary")
DML_CALLS = {
    ("Database", name)
    for name in ("insert", "update", "delete", "undelete", "upsert", "merge", "query")
} | {("EventBus", "publish"), ("System", "enqueueJob")}


def describe_errors(report: ParseReport) -> list[str]:
    return [
        f"{file.path}:{error['line']}:{error['column']}: {error['message'][:160]}"
        for file in report.files
        for error in file.errors
    ]


def test_every_class_and_trigger_parses(parsed_package: ParseReport) -> None:
    on_disk = sorted(
        path.resolve() for suffix in ("*.cls", "*.trigger") for path in SOURCE.rglob(suffix)
    )
    parsed = sorted((PLUGIN / file.path).resolve() for file in parsed_package.files)
    assert parsed == on_disk
    assert len(on_disk) >= 10
    assert describe_errors(parsed_package) == []


def test_the_parser_is_the_pinned_version(parsed_package: ParseReport) -> None:
    manifest = json.loads((PLUGIN / "package.json").read_text())
    lock = json.loads((PLUGIN / "package-lock.json").read_text())
    pinned = manifest["dependencies"][PARSER_PACKAGE_NAME]
    assert pinned[0].isdigit(), f"{PARSER_PACKAGE_NAME} must be pinned exactly, not {pinned!r}"
    assert lock["packages"][f"node_modules/{PARSER_PACKAGE_NAME}"]["version"] == pinned
    assert parsed_package.parser == f"{PARSER_PACKAGE_NAME} {pinned}"


def test_a_syntax_error_is_reported_with_its_place(tmp_path: Path) -> None:
    broken = tmp_path / "Broken.cls"
    broken.write_text("public class Broken {\n    void run() {\n        Integer x = ;\n    }\n}\n")
    trigger = tmp_path / "Fine.trigger"
    trigger.write_text("trigger Fine on Task (after insert) { }\n")
    done = subprocess.run(
        [node_executable(), str(PARSER_SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    files = {Path(item["path"]).name: item for item in json.loads(done.stdout)["files"]}
    assert files["Fine.trigger"]["errors"] == []
    (error,) = files["Broken.cls"]["errors"]
    assert (error["line"], error["column"]) == (3, 20)


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [node_executable(), str(PARSER_SCRIPT), str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "no such file or directory" in done.stderr
    assert done.stdout == ""


def test_each_file_declares_the_type_its_name_says(parsed_package: ParseReport) -> None:
    for file in parsed_package.files:
        assert file.tree is not None
        if file.unit == "class":
            assert ApexClass.of_file(file).name == file.path.stem
        else:
            unit = file.tree
            assert [child.text for child in unit.children[:2]] == ["trigger", file.path.stem]


@pytest.mark.parametrize(
    ("trigger", "sobject", "events"),
    [
        (
            "TaskChangeTrigger",
            "Task",
            ["afterinsert", "afterupdate", "afterdelete", "afterundelete"],
        ),
        ("TaskChangeEventTrigger", "Task_Change__e", ["afterinsert"]),
    ],
)
def test_the_triggers_listen_where_they_must(
    parsed_package: ParseReport, trigger: str, sobject: str, events: list[str]
) -> None:
    tree = parsed_package.by_name()[trigger].tree
    assert tree is not None
    assert tree.children[3].text == sobject
    assert [case.text.lower() for case in tree.find("TriggerCase")] == events
    members = tree.child("TriggerBlock").rule_children("TriggerBlockMember")
    assert [member.children[0].rule for member in members] == ["Statement"], (
        "a trigger only delegates to its class"
    )


def queries_and_dml_in_loops(root: Node) -> list[str]:
    found = []
    for loop in (node for node in root.walk() if node.rule in LOOPS):
        for node in loop.walk():
            if node.rule in DML_STATEMENTS + QUERIES:
                found.append(f"line {node.line}: {node.rule} inside a loop")
        for call in method_calls(loop):
            if (call.target, call.name) in DML_CALLS:
                found.append(f"line {call.line}: {call.target}.{call.name} inside a loop")
    return found


def test_no_query_or_dml_runs_inside_a_loop(parsed_package: ParseReport) -> None:
    problems = []
    for file in parsed_package.files:
        assert file.tree is not None
        if file.unit == "class" and "@istest" in ApexClass.of_file(file).modifiers:
            continue  # tests build their data in loops on purpose
        problems += [
            f"{file.path.name} {problem}" for problem in queries_and_dml_in_loops(file.tree)
        ]
    assert problems == []


def test_the_loop_check_sees_a_query_and_a_publish_in_a_loop(tmp_path: Path) -> None:
    source = tmp_path / "Careless.cls"
    source.write_text(
        "public class Careless {\n"
        "    static void run(List<Task> tasks) {\n"
        "        for (Task t : tasks) {\n"
        "            User u = [SELECT Id FROM User WHERE Id = :t.OwnerId];\n"
        "            EventBus.publish(new Task_Change__e());\n"
        "        }\n"
        "    }\n"
        "}\n"
    )
    (file,) = parse_apex([source]).files
    assert file.tree is not None
    assert queries_and_dml_in_loops(file.tree) == [
        "line 4: SoqlPrimary inside a loop",
        "line 5: EventBus.publish inside a loop",
    ]


def test_every_class_is_exercised_by_an_apex_test(apex_classes: dict[str, ApexClass]) -> None:
    tests = [cls for cls in apex_classes.values() if "@istest" in cls.modifiers]
    assert tests, "the package has Apex tests"
    test_tokens = set()
    for name in (cls.name for cls in tests):
        test_tokens |= set(_tokens_of(apex_classes, name))
    untested = {
        name
        for name, cls in apex_classes.items()
        if "@istest" not in cls.modifiers and name not in test_tokens
    }
    assert untested == set()


def _tokens_of(apex_classes: dict[str, ApexClass], name: str) -> list[str]:
    apex_class = apex_classes[name]
    tokens: list[str] = []
    for method in apex_class.methods:
        tokens += method.body.tokens()
    for declared in apex_class.fields.values():
        if declared.initializer is not None:
            tokens += declared.initializer.tokens()
    for inner in apex_class.inner.values():
        for method in inner.methods:
            tokens += method.body.tokens()
    return tokens
