"""resources/code.py: the code ConfigMap, its keys for nested files, and the code hash."""

from __future__ import annotations

import pytest

from kubelambda.controller.resources.code import (
    CODE_SIZE_LIMIT,
    CodeMount,
    CodeTooLarge,
    code_config_map,
    code_hash,
    config_map_hash,
    config_map_keys,
    inline_code_mount,
)
from kubelambda.controller.resources.meta import Owner


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["app.py"], {"app.py": "app.py"}),
        (
            ["pkg/__init__.py", "pkg/mod.py"],
            {"pkg/__init__.py": "pkg.__init__.py", "pkg/mod.py": "pkg.mod.py"},
        ),
        (["a/b/c.py"], {"a/b/c.py": "a.b.c.py"}),
    ],
)
def test_keys_are_readable_where_they_can_be(names: list[str], expected: dict[str, str]) -> None:
    assert config_map_keys(names) == expected


def test_a_nested_name_that_clashes_with_a_flat_one_gets_a_hashed_key() -> None:
    keys = config_map_keys(["pkg.mod.py", "pkg/mod.py"])
    assert keys["pkg.mod.py"] == "pkg.mod.py"
    assert keys["pkg/mod.py"].startswith("file-")
    assert len(set(keys.values())) == 2


def test_a_key_too_long_for_the_api_is_hashed() -> None:
    name = "d/" * 100 + "x" * 60 + ".py"  # 263 characters once '/' became '.'
    key = config_map_keys([name])[name]
    assert key.startswith("file-") and len(key) <= 253


def test_keys_are_valid_configmap_keys_for_every_allowed_name() -> None:
    names = ["a", "_x.py", "-y", "A/B_c-d.e/f.py", "x/y", "x.y"]
    keys = config_map_keys(names)
    assert len(set(keys.values())) == len(names)
    assert all(
        set(key) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        for key in keys.values()
    )


def test_the_mount_puts_each_key_back_at_its_file_name_and_counts_the_bytes() -> None:
    files = {"app.py": "é = 1\n", "pkg/util.py": "X = 1\n"}
    mount = inline_code_mount(files, function_name="hello")
    assert mount == CodeMount(
        config_map="hello-code",
        items=(("app.py", "app.py"), ("pkg.util.py", "pkg/util.py")),
        texts=("é = 1\n", "X = 1\n"),  # in the order of the items
    )
    assert mount.size == 7 + 6  # UTF-8 bytes: the limit is the kernel's, in bytes
    assert CodeMount("my-code").size is None  # a user's ConfigMap: not known here


def test_configmap_holds_the_files_under_their_keys_and_is_owned() -> None:
    owner = Owner(name="hello", namespace="team-a", uid="u1")
    config_map = code_config_map({"pkg/util.py": "X = 1\n", "app.py": "import pkg\n"}, owner=owner)
    assert config_map["metadata"]["name"] == "hello-code"
    assert config_map["metadata"]["namespace"] == "team-a"
    assert config_map["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert config_map["data"] == {"app.py": "import pkg\n", "pkg.util.py": "X = 1\n"}


def test_code_over_a_configmaps_capacity_is_refused_with_the_size() -> None:
    owner = Owner(name="big", namespace="d", uid="u")
    with pytest.raises(CodeTooLarge, match=r"spec.code.inline.files hold \d+ bytes"):
        code_config_map({"app.py": "x" * CODE_SIZE_LIMIT}, owner=owner)


def test_hash_ignores_order_and_sees_every_change() -> None:
    base = code_hash({"a.py": "1", "b.py": "2"})
    assert base == code_hash({"b.py": "2", "a.py": "1"})
    assert base.startswith("sha256:") and len(base) == len("sha256:") + 64
    assert base != code_hash({"a.py": "1", "b.py": "3"})
    assert base != code_hash({"a.py": "1", "c.py": "2"})
    # Moving bytes between name and content is a different file set.
    assert code_hash({"ab": "c"}) != code_hash({"a": "bc"})


def test_configmap_hash_covers_binary_data() -> None:
    plain = config_map_hash({"data": {"app.py": "x"}})
    assert plain == code_hash({"app.py": "x"})
    assert plain != config_map_hash({"data": {"app.py": "x"}, "binaryData": {"lib.so": "AAAA"}})
