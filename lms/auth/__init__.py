"""Accounts: tokens, passwords, MFA, revocation, roles and the guards routes declare."""
