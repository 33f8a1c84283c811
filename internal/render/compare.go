package render

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"reflect"
)

// text/template's comparisons and index, replaced by ones that charge
// steps for the bytes they compare or hash before doing it: the builtins
// cost up to a string's length (a secret's, 2 MiB or more) for one step of
// a range, so a loop of them ran until the mount's deadline. They take
// reflect.Value, as the builtins do (text/template passes its values as
// they are), and give what the builtins give for the values a template
// sees; their errors name types, never values.

// kib is the steps comparing or hashing n bytes costs: one per KiB begun,
// at least one.
func kib(n int) int { return 1 + n/1024 }

// compareCost is what comparing a with b costs: Go compares two strings
// up to the shorter one's length.
func compareCost(a, b reflect.Value) int {
	if a.Kind() == reflect.String && b.Kind() == reflect.String {
		return kib(min(a.Len(), b.Len()))
	}
	return 1
}

// sortCost is what text/template's sort of m's keys on entering a range
// costs beyond their count: each key's bytes about log2(len) times.
func sortCost(m reflect.Value) int {
	if m.Kind() != reflect.Map || m.Len() < 2 {
		return 0
	}
	n := 0
	for it := m.MapRange(); it.Next(); {
		if k := it.Key(); k.Kind() == reflect.String {
			n += k.Len()
		}
	}
	return kib(n) * bits.Len(uint(m.Len()-1))
}

var (
	errCompareType = errors.New("invalid type for comparison")
	errNoOperand   = errors.New("missing argument for comparison")
)

// kind is how a comparison sees a value; other is anything without an
// order: nil, lists, maps.
type kind int

const (
	other kind = iota
	boolKind
	complexKind
	intKind
	floatKind
	stringKind // json.Number too
	uintKind   // a byte that index takes from a string
)

func kindOf(v reflect.Value) kind {
	switch v.Kind() {
	case reflect.Bool:
		return boolKind
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return intKind
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return uintKind
	case reflect.Float32, reflect.Float64:
		return floatKind
	case reflect.Complex64, reflect.Complex128:
		return complexKind
	case reflect.String:
		return stringKind
	}
	return other
}

// operand is the value an interface holds (the zero Value for nil): a
// map's element arrives as an interface.
func operand(v reflect.Value) reflect.Value {
	if v.Kind() == reflect.Interface {
		return v.Elem()
	}
	return v
}

func incompatible(a, b reflect.Value) error {
	return fmt.Errorf("incompatible types for comparison: %v and %v", a.Type(), b.Type())
}

// eq is a == b || a == c || ...
func (t *Template) eq(a reflect.Value, bs ...reflect.Value) (bool, error) {
	if len(bs) == 0 {
		return false, errNoOperand
	}
	a = operand(a)
	for _, b := range bs {
		b = operand(b)
		if err := t.step(compareCost(a, b)); err != nil {
			return false, err
		}
		if same, err := equal(a, b); same || err != nil {
			return same, err
		}
	}
	return false, nil
}

func (t *Template) ne(a, b reflect.Value) (bool, error) {
	same, err := t.eq(a, b)
	return !same && err == nil, err
}

func (t *Template) lt(a, b reflect.Value) (bool, error) {
	a, b = operand(a), operand(b)
	if err := t.step(compareCost(a, b)); err != nil {
		return false, err
	}
	return less(a, b)
}

// le is lt or eq, charged once for both.
func (t *Template) le(a, b reflect.Value) (bool, error) {
	a, b = operand(a), operand(b)
	if err := t.step(compareCost(a, b)); err != nil {
		return false, err
	}
	if lt, err := less(a, b); lt || err != nil {
		return lt, err
	}
	return equal(a, b)
}

func (t *Template) gt(a, b reflect.Value) (bool, error) {
	le, err := t.le(a, b)
	return !le && err == nil, err
}

func (t *Template) ge(a, b reflect.Value) (bool, error) {
	lt, err := t.lt(a, b)
	return !lt && err == nil, err
}

// equal is a == b for operands: basic kinds by value (ints with uints by
// value too), anything else only when nil, or comparable.
func equal(a, b reflect.Value) (bool, error) {
	ka, kb := kindOf(a), kindOf(b)
	switch {
	case ka == uintKind && kb == intKind:
		return equal(b, a)
	case ka == intKind && kb == uintKind:
		return intUint(a.Int(), b.Uint()) == 0, nil
	case ka != kb:
		if a.IsValid() && b.IsValid() {
			return false, incompatible(a, b)
		}
		return false, nil // nil is unequal to a number, string or bool
	}
	switch ka {
	case boolKind:
		return a.Bool() == b.Bool(), nil
	case complexKind:
		return a.Complex() == b.Complex(), nil
	case intKind:
		return a.Int() == b.Int(), nil
	case floatKind:
		return a.Float() == b.Float(), nil
	case stringKind:
		return a.String() == b.String(), nil
	case uintKind:
		return a.Uint() == b.Uint(), nil
	}
	if a.IsValid() && b.IsValid() && a.Kind() != b.Kind() {
		return false, fmt.Errorf("non-comparable types %v and %v", a.Type(), b.Type())
	}
	if isNil(a) || isNil(b) {
		return isNil(a) == isNil(b), nil
	}
	if !b.Type().Comparable() {
		return false, fmt.Errorf("non-comparable type %v", b.Type())
	}
	return a.Interface() == b.Interface(), nil
}

// intUint compares a signed with an unsigned integer by value.
func intUint(i int64, u uint64) int {
	if i < 0 || u > math.MaxInt64 {
		return -1
	}
	return cmp.Compare(i, int64(u))
}

func isNil(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Invalid:
		return true
	case reflect.Chan, reflect.Func, reflect.Interface, reflect.Map, reflect.Pointer, reflect.Slice:
		return v.IsNil()
	}
	return false
}

// less is a < b for operands of one ordered kind (ints with uints by
// value).
func less(a, b reflect.Value) (bool, error) {
	ka, kb := kindOf(a), kindOf(b)
	if ka == other || kb == other {
		return false, errCompareType
	}
	switch {
	case ka == intKind && kb == uintKind:
		return intUint(a.Int(), b.Uint()) < 0, nil
	case ka == uintKind && kb == intKind:
		return intUint(b.Int(), a.Uint()) > 0, nil
	case ka != kb:
		return false, incompatible(a, b)
	}
	switch ka {
	case intKind:
		return a.Int() < b.Int(), nil
	case floatKind:
		return a.Float() < b.Float(), nil
	case stringKind:
		return a.String() < b.String(), nil
	case uintKind:
		return a.Uint() < b.Uint(), nil
	}
	return false, errCompareType // bool and complex have no order
}

// index is item[k1][k2]...: a list's or string's element by position, a
// map's by key (its element type's zero when absent), each key charged
// for the bytes a map hashes and compares.
func (t *Template) index(item reflect.Value, keys ...reflect.Value) (reflect.Value, error) {
	item = operand(item)
	if !item.IsValid() {
		return reflect.Value{}, errors.New("index of untyped nil")
	}
	for _, k := range keys {
		k = operand(k)
		cost := 1
		if k.Kind() == reflect.String {
			cost = kib(k.Len())
		}
		if err := t.step(cost); err != nil {
			return reflect.Value{}, err
		}
		// What the previous key found, out of its interface.
		for item.Kind() == reflect.Interface {
			if item.IsNil() {
				return reflect.Value{}, errors.New("index of nil")
			}
			item = item.Elem()
		}
		switch item.Kind() {
		case reflect.Slice, reflect.Array, reflect.String:
			i, err := position(k, item.Len())
			if err != nil {
				return reflect.Value{}, err
			}
			item = item.Index(i)
		case reflect.Map:
			m := item.Type()
			key := m.Key()
			if !k.IsValid() {
				return reflect.Value{}, fmt.Errorf("value is nil; should be of type %v", key)
			}
			if !k.Type().AssignableTo(key) {
				return reflect.Value{}, fmt.Errorf("value has type %v; should be %v", k.Type(), key)
			}
			if item = item.MapIndex(k); !item.IsValid() {
				item = reflect.Zero(m.Elem())
			}
		default:
			return reflect.Value{}, fmt.Errorf("can't index item of type %v", item.Type())
		}
	}
	return item, nil
}

// position is k as an index into n elements.
func position(k reflect.Value, n int) (int, error) {
	var i int64
	switch kindOf(k) {
	case intKind:
		i = k.Int()
	case uintKind:
		i = int64(min(k.Uint(), math.MaxInt64))
	default:
		if !k.IsValid() {
			return 0, errors.New("cannot index slice/array with nil")
		}
		return 0, fmt.Errorf("cannot index slice/array with type %v", k.Type())
	}
	if i < 0 || i >= int64(n) {
		return 0, fmt.Errorf("index out of range: %d", i)
	}
	return int(i), nil
}
