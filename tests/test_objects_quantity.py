"""CPU and memory quantities: what they mean as integers, and clear refusals."""

from __future__ import annotations

import pytest

from edgenode.objects import QuantityError, cpu_millis, memory_bytes


@pytest.mark.parametrize(
    ("quantity", "millis"),
    [("500m", 500), ("0.5", 500), ("2", 2000), (2, 2000), (0.25, 250), ("1.5", 1500), ("1m", 1)],
)
def test_cpu_millis_reads_cores_and_millicores(quantity: str | int | float, millis: int) -> None:
    assert cpu_millis(quantity) == millis


@pytest.mark.parametrize(
    ("quantity", "nbytes"),
    [
        ("128Mi", 128 * 2**20),
        ("1Gi", 2**30),
        ("512M", 512 * 10**6),
        ("1000000", 10**6),
        (1000000, 10**6),
        ("1k", 1000),
        ("2Ki", 2048),
        ("1Ti", 2**40),
        ("1T", 10**12),
        ("1.5Gi", 3 * 2**29),
    ],
)
def test_memory_bytes_reads_decimal_and_binary_units(quantity: str | int, nbytes: int) -> None:
    assert memory_bytes(quantity) == nbytes


@pytest.mark.parametrize(
    ("quantity", "says"),
    [
        ("12x", "unknown unit 'x'"),
        ("128MB", "use M (10^6) or Mi (2^20)"),
        ("128m", "'m' is not a memory unit"),
        ("1gi", "write Gi"),
        ("-1Gi", "cannot be negative"),
        ("1.5", "whole number of bytes"),
        ("", "a memory quantity is a number of bytes"),
        ("lots", "a memory quantity is a number of bytes"),
        (True, "not a boolean"),
    ],
)
def test_memory_bytes_refuses_bad_values_saying_why(quantity: object, says: str) -> None:
    with pytest.raises(QuantityError) as info:
        memory_bytes(quantity)  # type: ignore[arg-type]
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("quantity", "says"),
    [
        ("500M", "lowercase m"),
        ("0.0005", "smallest CPU unit is 1m"),
        ("0.5m", "smallest CPU unit is 1m"),
        ("-1", "cannot be negative"),
        ("two", "number of cores"),
        (float("nan"), "finite"),
    ],
)
def test_cpu_millis_refuses_bad_values_saying_why(quantity: object, says: str) -> None:
    with pytest.raises(QuantityError) as info:
        cpu_millis(quantity)  # type: ignore[arg-type]
    assert says in str(info.value)


def test_quantity_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        cpu_millis("x")
