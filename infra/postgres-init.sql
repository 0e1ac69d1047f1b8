-- The databases of the stack (infra/compose.yaml; `make up` creates the same ones natively).
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
CREATE DATABASE decisions;
