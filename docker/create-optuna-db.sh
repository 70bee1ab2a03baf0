#!/bin/sh
# Runs once, when the postgres volume is first initialised: a second database for Optuna.
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -c "CREATE DATABASE optuna;"
