"""Field values: the rules one value must meet (scalar reference semantics) and their column-wise form.

`fields` holds the rules for one value (date formats, decimal comma, code lists, ranges); `spec` names
what a staged column is (its kind, name in messages, formats, value map); `scalar` applies a spec to one
value exactly as the record-at-a-time readers did; `vector` is the same rule over a whole column for
the values whose shape it can decide; `column` runs the vector and asks `scalar` only about the rest.
"""
