"""Short real programs for throughput benchmarks: small functions with their tests, the
shape of a code-generation benchmark's samples. Each prints ``ok <n>`` when its tests pass."""

from __future__ import annotations

__all__ = ["short_programs"]

_TEMPLATES = [
    """
def fizzbuzz(n):
    return ["FizzBuzz" if i % 15 == 0 else "Fizz" if i % 3 == 0 else "Buzz" if i % 5 == 0
            else str(i) for i in range(1, n + 1)]
out = fizzbuzz({k} + 15)
assert out[2] == "Fizz" and out[4] == "Buzz" and out[14] == "FizzBuzz"
assert len(out) == {k} + 15
""",
    """
def primes(limit):
    sieve = bytearray([1]) * (limit + 1)
    sieve[0:2] = b"\\x00\\x00"
    for i in range(2, int(limit ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
    return [i for i, p in enumerate(sieve) if p]
found = primes(1000 + {k})
assert found[:5] == [2, 3, 5, 7, 11] and all(p % 2 for p in found[1:])
""",
    """
from functools import lru_cache
@lru_cache(maxsize=None)
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
assert [fib(i) for i in range(10)] == [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
assert fib(60 + {k} % 10) > 10 ** 12
""",
    """
def is_palindrome(text):
    letters = [c.lower() for c in text if c.isalnum()]
    return letters == letters[::-1]
assert is_palindrome("A man, a plan, a canal: Panama")
assert not is_palindrome("palindrome {k}")
assert is_palindrome(str({k}) + str({k})[::-1])
""",
    """
import random
def merge_sort(items):
    if len(items) <= 1:
        return items
    middle = len(items) // 2
    left, right = merge_sort(items[:middle]), merge_sort(items[middle:])
    merged = []
    while left and right:
        merged.append(left.pop(0) if left[0] <= right[0] else right.pop(0))
    return merged + left + right
data = random.Random({k}).sample(range(10000), 300)
assert merge_sort(data) == sorted(data)
""",
    """
from math import gcd
def lcm(a, b):
    return a * b // gcd(a, b)
assert lcm(4, 6) == 12 and lcm(21, 6) == 42
assert all(lcm(a, {k} + 1) % a == 0 for a in range(1, 200))
""",
    """
def binary_search(items, target):
    low, high = 0, len(items) - 1
    while low <= high:
        middle = (low + high) // 2
        if items[middle] == target:
            return middle
        low, high = (middle + 1, high) if items[middle] < target else (low, middle - 1)
    return -1
items = list(range(0, 5000, 3))
assert all(binary_search(items, v) == i for i, v in enumerate(items))
assert binary_search(items, 3 * {k} + 1) == -1
""",
    """
from collections import Counter
def top_words(text, n):
    return [w for w, _ in Counter(text.lower().split()).most_common(n)]
text = "the cat and the hat and the bat " * ({k} % 7 + 1)
assert top_words(text, 2) == ["the", "and"]
""",
    """
def matmul(a, b):
    return [[sum(x * y for x, y in zip(row, col)) for col in zip(*b)] for row in a]
size = 20 + {k} % 10
identity = [[int(i == j) for j in range(size)] for i in range(size)]
m = [[i * size + j for j in range(size)] for i in range(size)]
assert matmul(m, identity) == m
""",
    """
import json
def roundtrip(value):
    return json.loads(json.dumps(value))
record = {{"id": {k}, "tags": ["a", "b"], "nested": {{"x": 1.5, "y": None}}}}
assert roundtrip(record) == record
""",
]


def short_programs(count: int) -> list[tuple[str, str]]:
    """``count`` programs and the stdout each must print."""
    programs = []
    for number in range(count):
        template = _TEMPLATES[number % len(_TEMPLATES)]
        programs.append((template.format(k=number) + f"print('ok {number}')\n", f"ok {number}\n"))
    return programs
