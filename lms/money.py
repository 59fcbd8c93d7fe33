"""Exact money: a Decimal beside its ISO 4217 currency, with that currency's minor unit.

ISO 4217 fixes how many decimals a currency has (its exponent): JPY 0,
USD and EGP 2, KWD, BHD and OMR 3, CLF 4. Amounts are stored as NUMERIC with
four decimals (enough for every exponent), travel in the API as a decimal
string with exactly the currency's decimals (``{"amount": "12.500",
"currency": "KWD"}``) and go to gateways in minor units (``12500`` fils).
The exponents come from the ``iso4217`` package (the ISO list itself);
codes without a minor unit (gold, testing codes) are not money we charge.
"""

from __future__ import annotations

import functools
from decimal import Decimal, InvalidOperation

from iso4217 import Currency
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

# NUMERIC(19, 4): 15 digits before the point whatever the currency.
MAX_DIGITS = 19
SCALE = 4
MAX_AMOUNT = Decimal(10) ** (MAX_DIGITS - SCALE) - 1


class UnknownCurrency(ValueError):
    """Not an ISO 4217 code with a minor unit."""


def exponent(currency: str) -> int:
    """The currency's number of decimals (ISO 4217 minor unit)."""
    return _exponent(currency.upper())


# Cached: every priced row of a response asks (the enum lookup was a tenth of a
# catalogue page's rendering). Only codes that exist are kept (errors are not
# cached), so the cache stays as small as the ISO list.
@functools.cache
def _exponent(code: str) -> int:
    try:
        value = Currency(code).exponent
    except ValueError as err:
        raise UnknownCurrency(f"{code!r} is not an ISO 4217 currency code") from err
    if value is None:
        raise UnknownCurrency(f"{code!r} has no minor unit (not a currency one pays in)")
    return int(value)


def quantum(currency: str) -> Decimal:
    return _quantum(exponent(currency))


@functools.cache
def _quantum(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


def normalize(amount: Decimal | str | int, currency: str) -> Decimal:
    """The amount with exactly the currency's decimals; more precision than that is refused."""
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError, ValueError) as err:
        raise ValueError(f"{amount!r} is not a decimal amount") from err
    if not value.is_finite():
        raise ValueError("the amount must be a finite number")
    q = quantum(currency)
    rounded = value.quantize(q)
    if rounded != value:
        raise ValueError(f"{currency.upper()} has {exponent(currency)} decimal place(s); {value} has more")
    return rounded


def to_minor(amount: Decimal | str | int, currency: str) -> int:
    """12.500 KWD → 12500 (fils); 5000 JPY → 5000; 49.00 USD → 4900 (cents)."""
    return int(normalize(amount, currency).scaleb(exponent(currency)))


def from_minor(units: int, currency: str) -> Decimal:
    return Decimal(int(units)).scaleb(-exponent(currency)).quantize(quantum(currency))


def format_amount(amount: Decimal, currency: str) -> str:
    """The decimal string the API shows: the currency's own decimals, no exponent notation."""
    return f"{Decimal(amount).quantize(quantum(currency)):f}"


def money(amount: Decimal | None, currency: str | None) -> dict[str, str] | None:
    """A stored amount and currency as the API's money object (None when either is missing)."""
    if amount is None or currency is None:
        return None
    return {"amount": format_amount(amount, currency), "currency": currency}


class Money(BaseModel):
    """A decimal string and its ISO 4217 currency: ``{"amount": "49.00", "currency": "USD"}``.

    The amount takes at most the currency's decimals (``"12.345"`` KWD, ``"5000"``
    JPY) and is shown with exactly that many.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"amount": "49.00", "currency": "USD"}]})
    amount: Decimal = Field(ge=0, le=MAX_AMOUNT, description="Decimal string with the currency's decimals.")
    currency: str = Field(pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code.")

    @field_validator("currency")
    @classmethod
    def known_currency(cls, value: str) -> str:
        value = value.upper()
        exponent(value)
        return value

    @model_validator(mode="after")
    def currency_decimals(self) -> Money:
        try:
            self.amount = normalize(self.amount, self.currency)
        except ValueError as err:  # reported on the amount, where the client must fix it
            detail = InitErrorDetails(
                type=PydanticCustomError("value_error", str(err)), loc=("amount",), input=self.amount
            )
            raise ValidationError.from_exception_data("Money", [detail]) from err
        return self

    @field_serializer("amount", when_used="always")
    def amount_string(self, amount: Decimal) -> str:
        return format_amount(amount, self.currency)

    @property
    def minor(self) -> int:
        return to_minor(self.amount, self.currency)
